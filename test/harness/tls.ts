/**
 * Throw-away certificates for TLS tests, made with the openssl CLI in a temp dir: a CA, a server
 * certificate for 127.0.0.1/localhost, a client certificate of that CA, and a client certificate
 * of an unrelated CA (what a misconfigured or hostile client presents).
 */
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

/** Paths of one certificate and its key (PEM). */
export interface CertFiles {
  readonly cert: string
  readonly key: string
}

/** Everything a TLS test needs; `remove()` deletes the temp dir. */
export interface TlsFixtures {
  readonly dir: string
  /** The CA etcd trusts (`--trusted-ca-file`) and clients verify etcd with. */
  readonly caFile: string
  readonly server: CertFiles
  /** Signed by the trusted CA. */
  readonly client: CertFiles
  /** Signed by another CA, which etcd does not trust. */
  readonly foreignClient: CertFiles
  /** The other CA's certificate. */
  readonly foreignCaFile: string
  /** `credentials` for the etcd3 client: the CA, and `certs`' key and certificate if given. */
  credentials(certs?: CertFiles): {
    rootCertificate: Buffer
    privateKey?: Buffer
    certChain?: Buffer
  }
  remove(): void
}

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd }, (error, _stdout, stderr) =>
      error ? reject(new Error(`openssl ${args[0]} failed: ${error.message}${stderr}`)) : resolve(),
    )
  })
}

// P-256 keys: generated in milliseconds, unlike RSA, and both etcd (Go) and gRPC (Node) take them.
const NEW_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

async function makeCa(dir: string, name: string): Promise<CertFiles> {
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) }
  await openssl(
    [
      'req',
      '-x509',
      ...NEW_KEY,
      '-keyout',
      files.key,
      '-out',
      files.cert,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  )
  return files
}

async function makeLeaf(
  dir: string,
  name: string,
  ca: CertFiles,
  extensions: string,
): Promise<CertFiles> {
  const files = { cert: join(dir, `${name}.crt`), key: join(dir, `${name}.key`) }
  const csr = join(dir, `${name}.csr`)
  const ext = join(dir, `${name}.ext`)
  writeFileSync(ext, extensions)
  await openssl(
    ['req', '-new', ...NEW_KEY, '-keyout', files.key, '-out', csr, '-subj', `/CN=${name}`],
    dir,
  )
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      ca.cert,
      '-CAkey',
      ca.key,
      // A random serial each: parallel signings by one CA must not share a serial file.
      '-set_serial',
      `0x${randomBytes(8).toString('hex')}`,
      '-out',
      files.cert,
      '-days',
      '2',
      '-extfile',
      ext,
    ],
    dir,
  )
  return files
}

/** Generates the CA, server and client certificates in a new temp dir (well under a second). */
export async function makeTlsFixtures(): Promise<TlsFixtures> {
  const dir = mkdtempSync(join(tmpdir(), 'tus-etcd3-locker-tls-'))
  try {
    const [ca, foreignCa] = await Promise.all([makeCa(dir, 'ca'), makeCa(dir, 'foreign-ca')])
    const leaf = 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n'
    const [server, client, foreignClient] = await Promise.all([
      makeLeaf(
        dir,
        'server',
        ca,
        `${leaf}extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n`,
      ),
      makeLeaf(dir, 'client', ca, `${leaf}extendedKeyUsage=clientAuth\n`),
      makeLeaf(dir, 'foreign-client', foreignCa, `${leaf}extendedKeyUsage=clientAuth\n`),
    ])
    return {
      dir,
      caFile: ca.cert,
      server,
      client,
      foreignClient,
      foreignCaFile: foreignCa.cert,
      credentials: (certs) => ({
        rootCertificate: readFileSync(ca.cert),
        ...(certs && { privateKey: readFileSync(certs.key), certChain: readFileSync(certs.cert) }),
      }),
      remove: () => rmSync(dir, { recursive: true, force: true }),
    }
  } catch (error) {
    rmSync(dir, { recursive: true, force: true })
    throw error
  }
}
