/**
 * `npm install` on a fresh clone, the README's first command: every dependency that ships an
 * install script has its entry in package.json's `allowScripts`, so npm (11.16 on) prints no
 * "install scripts not yet covered" warning, and npm 12, which skips the scripts not listed,
 * installs what npm 11 does. Read from package-lock.json, which records each such package.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('..', import.meta.url))
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as {
  allowScripts?: Record<string, boolean>
}
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8')) as {
  packages: Record<string, { hasInstallScript?: boolean }>
}

/** The package name of a lockfile path: `node_modules/a/node_modules/@s/b` is `@s/b`. */
function nameOf(path: string): string {
  return path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length)
}

describe('npm install', () => {
  it('has a decision in allowScripts for every dependency with an install script', () => {
    const withScripts = Object.entries(lock.packages)
      .filter(([path, entry]) => path !== '' && entry.hasInstallScript === true)
      .map(([path]) => nameOf(path))
    expect(withScripts.length).toBeGreaterThan(0)
    // An entry is the name alone or the name with a version or range (`esbuild@0.28.2`).
    const decided = Object.keys(manifest.allowScripts ?? {})
    const undecided = withScripts.filter(
      (name) => !decided.some((key) => key === name || key.startsWith(`${name}@`)),
    )
    expect(undecided).toEqual([])
  })
})
