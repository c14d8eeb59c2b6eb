import { BackendUnavailableError } from '../../../contract/errors.js';

/**
 * A registry answered with an error (or not at all). A BackendUnavailableError, so the service maps
 * it to 503; `status` and `registryCode` (e.g. MANIFEST_UNKNOWN, BLOB_UNKNOWN, DIGEST_INVALID,
 * UNAUTHORIZED) let callers tell "not there" from "broken". The message names the method and the
 * URL path only: never a header (auth), never a query (upload state tokens).
 */
export class RegistryError extends BackendUnavailableError {
  readonly status: number | undefined;
  readonly registryCode: string | undefined;
  constructor(message: string, options: { status?: number; registryCode?: string; cause?: unknown } = {}) {
    super(message, options.cause);
    this.name = 'RegistryError';
    this.status = options.status;
    this.registryCode = options.registryCode;
  }
}

/** The registry's `{"errors":[{"code","message"}]}` body, if it is one (bounded read). */
function parseErrors(text: string): { code: string; message: string }[] {
  try {
    const body = JSON.parse(text) as { errors?: { code?: unknown; message?: unknown }[] };
    if (!Array.isArray(body.errors)) return [];
    return body.errors.map((e) => ({ code: String(e.code ?? ''), message: String(e.message ?? '') }));
  } catch {
    return [];
  }
}

/** Builds the RegistryError for a non-success response; consumes (at most 64 KiB of) its body. */
export async function errorFromResponse(what: string, method: string, url: URL, res: Response): Promise<RegistryError> {
  let text = '';
  try {
    text = (await res.text()).slice(0, 65_536);
  } catch {
    /* body unreadable: status alone */
  }
  return errorFromBody(what, method, url, res.status, res.statusText, text);
}

/** The RegistryError for an error response whose body was already read. */
export function errorFromBody(
  what: string,
  method: string,
  url: URL,
  status: number,
  statusText: string,
  text: string,
): RegistryError {
  const errors = parseErrors(text);
  const first = errors[0];
  const detail =
    errors.length > 0
      ? errors.map((e) => `${e.code}: ${e.message}`).join('; ')
      : text.trim().slice(0, 200) || statusText;
  return new RegistryError(`${what}: registry ${method} ${url.pathname} → HTTP ${status} ${detail}`, {
    status,
    ...(first ? { registryCode: first.code } : {}),
  });
}
