/**
 * Why tests that need root cannot run here (undefined = they can): they start commands as other uids
 * (chroot --userspec) and read every process. CI runs as root; elsewhere the skip is said out loud.
 */
export const rootUnavailable: string | undefined =
  process.getuid?.() === 0 ? undefined : `not root (uid ${process.getuid?.() ?? '?'})`;

if (rootUnavailable !== undefined) {
  if (process.env.CI === 'true') throw new Error(`these tests need root in CI: ${rootUnavailable}`);
  console.warn(`\n!!!!!!!!!! ROOT-ONLY TESTS SKIPPED: ${rootUnavailable} !!!!!!!!!!\n`);
}
