/** Renders the ratios of a bench run as a horizontal bar chart (SVG, no dependencies). */

export interface Bar {
  label: string
  value: number
  /** Where the goal lies, if there is one, and whether higher is better. */
  goal?: { value: number; higherIsBetter: boolean }
}

export function barChart(title: string, bars: Bar[]): string {
  const width = 760
  const left = 330
  const rowHeight = 30
  const top = 50
  const height = top + bars.length * rowHeight + 40
  // A log scale: ratios run from below 1 to several hundred.
  const values = bars.flatMap((b) => [b.value, b.goal?.value ?? 1]).filter((v) => v > 0)
  const lo = Math.log10(Math.min(0.1, ...values))
  const hi = Math.log10(Math.max(10, ...values) * 1.5)
  const x = (v: number) =>
    left + ((Math.log10(Math.max(v, 10 ** lo)) - lo) / (hi - lo)) * (width - left - 60)
  const escapeXml = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;')
  const rows = bars.map((bar, i) => {
    const y = top + i * rowHeight
    const met =
      bar.goal === undefined
        ? undefined
        : bar.goal.higherIsBetter
          ? bar.value >= bar.goal.value
          : bar.value <= bar.goal.value
    const colour = met === undefined ? '#6b7280' : met ? '#16a34a' : '#dc2626'
    const goal = bar.goal
      ? `<line x1="${x(bar.goal.value)}" x2="${x(bar.goal.value)}" y1="${y - 2}" y2="${y + 22}" stroke="#111" stroke-dasharray="3,2"/>`
      : ''
    return [
      `<text x="${left - 8}" y="${y + 15}" text-anchor="end" font-size="12">${escapeXml(bar.label)}</text>`,
      `<rect x="${left}" y="${y}" width="${Math.max(1, x(bar.value) - left)}" height="20" fill="${colour}"/>`,
      `<text x="${x(bar.value) + 4}" y="${y + 15}" font-size="12">${bar.value}</text>`,
      goal,
    ].join('')
  })
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" role="img">`,
    `<title>${escapeXml(title)}</title>`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="25" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
    `<line x1="${x(1)}" x2="${x(1)}" y1="${top - 8}" y2="${height - 30}" stroke="#9ca3af"/>`,
    `<text x="${x(1)}" y="${height - 14}" font-size="11" text-anchor="middle">1.0</text>`,
    `<text x="${width - 10}" y="${height - 14}" font-size="11" text-anchor="end">log scale</text>`,
    ...rows,
    `<text x="10" y="${height - 14}" font-size="11">dashed: goal; green: goal met; grey: no goal</text>`,
    '</svg>',
  ].join('\n')
}
