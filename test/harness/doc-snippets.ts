/**
 * The code blocks of the README and docs/*.md: every ```ts / ```js block, with the marker
 * comment that may stand on the line before it. `<!-- snippet: fragment (why) -->` excludes a
 * block from the checks, explicitly and with a reason; `<!-- snippet: usage ... -->` marks the
 * README's Usage, which is also run. Every other block is a program.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'

export interface DocSnippet {
  /** The document, relative to the repository (`README.md`, `docs/operations.md`). */
  file: string
  /** 1-based line of the opening fence. */
  line: number
  language: string
  code: string
  /** `program`, `usage` (a program that is run) or `fragment`. */
  kind: 'program' | 'usage' | 'fragment'
  /** For a fragment: the reason given in its marker. */
  reason: string | undefined
}

const LANGUAGES = new Set(['ts', 'typescript', 'js', 'javascript'])
const MARKER = /^<!--\s*snippet:\s*(\w+)\s*(?:\((.*)\))?\s*-->$/

/** The README and every docs/*.md of the repository at `root`. */
export function documents(root: string): string[] {
  const docs = readdirSync(join(root, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => join(root, 'docs', name))
  return [join(root, 'README.md'), ...docs]
}

/** Every ts/js code block of `path`, with its kind. */
export function snippetsOf(root: string, path: string): DocSnippet[] {
  const lines = readFileSync(path, 'utf8').split('\n')
  const snippets: DocSnippet[] = []
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(\S*)/.exec(lines[i] ?? '')
    if (!fence) continue
    const end = lines.findIndex((l, j) => j > i && l.startsWith('```'))
    if (end < 0) throw new Error(`${path}:${i + 1}: a code block that is never closed`)
    const language = (fence[1] ?? '').split(/[\s{]/)[0] ?? ''
    if (LANGUAGES.has(language)) {
      const marker = MARKER.exec((lines[i - 1] ?? '').trim())
      const kind = marker?.[1] ?? 'program'
      if (kind !== 'program' && kind !== 'usage' && kind !== 'fragment') {
        throw new Error(`${path}:${i}: unknown snippet marker "${kind}"`)
      }
      snippets.push({
        file: relative(root, path),
        line: i + 1,
        language,
        code: lines.slice(i + 1, end).join('\n'),
        kind,
        reason: marker?.[2]?.trim() || undefined,
      })
    }
    i = end
  }
  return snippets
}
