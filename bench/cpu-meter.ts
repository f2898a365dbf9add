/** The CPU a bench phase spent, this process's and etcd's. */
import { etcdMetricSum } from '../test/harness/etcd-metrics.js'
import type { BenchContext } from './scenarios.js'

/** CPU seconds spent by this process (every thread: JavaScript, GC, gRPC) and by etcd. */
export interface CpuSpent {
  client: number
  etcd: number
}

/**
 * Where a phase's time goes on this machine: the CPU this process and etcd spent in it. Their sum
 * over the cores is how long the phase must take here, however its work is overlapped.
 */
export async function cpuMeter(ctx: BenchContext): Promise<() => Promise<CpuSpent>> {
  const etcdCpu = () => etcdMetricSum(ctx.hosts, 'process_cpu_seconds_total')
  const etcdBefore = await etcdCpu()
  const clientBefore = process.cpuUsage()
  return async () => {
    const { user, system } = process.cpuUsage(clientBefore)
    return { client: (user + system) / 1e6, etcd: (await etcdCpu()) - etcdBefore }
  }
}
