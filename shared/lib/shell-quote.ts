/** `value` as one single-quoted POSIX shell word: any byte is literal, a `'` becomes `'\''`. */
export function shellQuote(value: string): string {
  return `'${value.replaceAll("'", "'\\''")}'`;
}
