/**
 * CHANGELOG.md keeps the Keep a Changelog layout that readers and release tools parse: the title
 * first, then releases (`## [Unreleased]`, `## [x.y.z] - date`), each entry under a section
 * heading of its release (`### Added`, `### Fixed (...)`). An entry pasted above the title or
 * before any section is read by no tool.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'

const SECTIONS = /^### (Added|Changed|Deprecated|Removed|Fixed|Security)( \(.+\))?$/
const RELEASE = /^## \[(Unreleased|\d+\.\d+\.\d+)\]( - \d{4}-\d{2}-\d{2})?$/

it('CHANGELOG.md: the title first, every entry under a section of a release', () => {
  const path = fileURLToPath(new URL('../CHANGELOG.md', import.meta.url))
  const lines = readFileSync(path, 'utf8').split('\n')
  expect(lines[0]).toBe('# Changelog')
  const misplaced: string[] = []
  let release: string | undefined
  let section: string | undefined
  lines.forEach((line, index) => {
    if (line.startsWith('## ')) {
      if (!RELEASE.test(line)) misplaced.push(`${index + 1}: release heading ${line}`)
      release = line
      section = undefined
    } else if (line.startsWith('### ')) {
      if (!SECTIONS.test(line)) misplaced.push(`${index + 1}: unknown section ${line}`)
      if (release === undefined) misplaced.push(`${index + 1}: section before any release`)
      section = line
    } else if (/^[-*+] /.test(line) && section === undefined) {
      misplaced.push(`${index + 1}: entry outside a section: ${line.slice(0, 60)}`)
    }
  })
  expect(misplaced).toEqual([])
  expect(lines.find((line) => line.startsWith('## '))).toBe('## [Unreleased]')
})
