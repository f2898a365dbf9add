/** Text output: aligned columns that stay easy to grep and to cut. */

/** Rows as lines, each column padded to its widest cell (the last column is not padded). */
export function table(rows: string[][]): string[] {
  const widths: number[] = []
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length)
    })
  }
  return rows.map((row) =>
    row
      .map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd(),
  )
}

/** `9s`, or `expired` for a lease etcd no longer has. */
export function seconds(ttl: number | null): string {
  return ttl === null ? 'expired' : `${ttl}s`
}

/**
 * An id as one cell: as is, unless it is empty-looking or holds whitespace, control characters
 * or a quote, which would break the columns; those are JSON-quoted.
 */
export function cell(id: string): string {
  return /^[^\s"\p{Cc}]+$/u.test(id) ? id : JSON.stringify(id)
}
