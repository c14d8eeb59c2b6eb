import dns from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

/**
 * Where a hook given per workspace may point. Its URL comes from an API caller, and the provider POSTs
 * from inside the customer's network (a Lambda in the VPC, a server beside other services): without a
 * rule it would reach whatever the provider can — the instance metadata endpoint, internal services,
 * the host's loopback. So, unless the operator allows it (`webhookDelivery.allowHttp`,
 * `allowPrivateAddresses`; the configured hooks are the operator's own and never restricted): https
 * only, and no loopback, private, link-local, shared, multicast or reserved address — refused when the
 * URL names one (400 at create), and checked again on every connection for what a name resolves to
 * (a name that resolves to such an address, or is made to later, fails the delivery).
 */

const BLOCKED = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8],
  ['10.0.0.0', 8],
  ['100.64.0.0', 10],
  ['127.0.0.0', 8],
  ['169.254.0.0', 16],
  ['172.16.0.0', 12],
  ['192.0.0.0', 24],
  ['192.0.2.0', 24],
  ['192.168.0.0', 16],
  ['198.18.0.0', 15],
  ['198.51.100.0', 24],
  ['203.0.113.0', 24],
  ['224.0.0.0', 4],
  ['240.0.0.0', 4],
] as const)
  BLOCKED.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  ['::', 127], // unspecified and loopback
  ['::ffff:0:0', 96], // IPv4-mapped: checked as the IPv4 address below
  ['64:ff9b::', 96], // NAT64: reaches IPv4 addresses
  ['100::', 64],
  ['2001:db8::', 32],
  ['fc00::', 7],
  ['fe80::', 10],
  ['ff00::', 8],
] as const)
  BLOCKED.addSubnet(net, prefix, 'ipv6');

/** True for an address a workspace's hook must not reach (see above). */
export function isPrivateAddress(address: string): boolean {
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (mapped !== undefined) return BLOCKED.check(mapped, 'ipv4');
  const family = isIP(address);
  if (family === 0) return true;
  return BLOCKED.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

export interface TargetPolicy {
  allowHttp: boolean;
  allowPrivateAddresses: boolean;
}

/** Why a workspace's hook URL is refused under `policy`, or undefined when it may be used. */
export function refusedTarget(url: string, policy: TargetPolicy): string | undefined {
  const parsed = new URL(url);
  if (parsed.protocol !== 'https:' && !policy.allowHttp) return 'must be https';
  if (policy.allowPrivateAddresses) return undefined;
  const host = parsed.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (host === 'localhost' || host.endsWith('.localhost')) return 'must not name the local host';
  if (isIP(host) !== 0 && isPrivateAddress(host))
    return 'must not be a loopback, private, link-local or reserved address';
  return undefined;
}

/** Error code of a connection refused by `publicOnlyLookup`: a delivery that gets it is failed, not retried. */
export const PRIVATE_TARGET = 'EPRIVATETARGET';

/** dns.lookup that fails when the name resolves to any address `isPrivateAddress` refuses. */
export const publicOnlyLookup = ((hostname: string, options: dns.LookupOptions, callback: LookupCallback) => {
  dns.lookup(hostname, { ...options, all: true }, (error, addresses) => {
    if (error) return callback(error, []);
    if (addresses.length === 0 || addresses.some((a) => isPrivateAddress(a.address))) {
      const refused = Object.assign(new Error(`${hostname} resolves to a private or reserved address`), {
        code: PRIVATE_TARGET,
      });
      return callback(refused, []);
    }
    if (options.all) return callback(null, addresses);
    const first = addresses[0]!;
    return callback(null, first.address, first.family);
  });
}) as unknown as LookupFunction;

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | dns.LookupAddress[],
  family?: number,
) => void;
