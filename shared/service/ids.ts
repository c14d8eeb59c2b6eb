import { randomBytes } from 'node:crypto';

/** Ids are lowercase hex so they are safe in paths, labels, tags and DynamoDB keys. */
export const newWorkspaceId = (): string => `ws-${randomBytes(12).toString('hex')}`;
export const newCommandId = (): string => `cmd-${randomBytes(12).toString('hex')}`;
/** Internal steps (setup, git, fingerprint) run as commands too, under a distinct prefix. */
export const newSystemCommandId = (): string => `sys-${randomBytes(12).toString('hex')}`;
export const newInstanceId = (): string => `wsp-${randomBytes(8).toString('hex')}`;
/** A snapshot of a workspace's current state (a fork point, a user snapshot): also its backend snapshot's name. */
export const newSnapshotId = (): string => `snap-${randomBytes(12).toString('hex')}`;
/** A persistent shell session (issue 13). */
export const newSessionId = (): string => `sess-${randomBytes(12).toString('hex')}`;
