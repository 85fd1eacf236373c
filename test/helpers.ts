/** Shared test helpers: temp dirs that clean themselves up, and VMs deployed into them. */

import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { TestContext } from 'node:test'
import { DivergenceError, VM, type VMOptions } from '../src/index.js'

/** A fresh temp dir, removed when the test ends. */
export async function tempDir(t: TestContext, prefix = 'libvms-test-'): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix))
  t.after(() => rm(dir, { recursive: true, force: true }))
  return dir
}

/** Deploys `code` into a fresh temp dir; the VM is closed when the test ends. */
export async function deployVM(t: TestContext, code: string, options: VMOptions & { title?: string } = {}): Promise<VM> {
  const dir = await tempDir(t)
  const vm = new VM(code, options)
  await vm.deploy({ dir: join(dir, 'vm'), title: options.title ?? 'test vm' })
  t.after(() => vm.close())
  return vm
}

/** Calls `method` on `vm` and returns the rejection (fails the test if the call succeeds). */
export async function callError(
  vm: VM,
  methodName: string,
  args: unknown[] = [],
  userId?: string,
): Promise<Error & { code?: string; seq?: number }> {
  try {
    const value = await vm.executeCall({ methodName, args, userId })
    throw new Error(`expected ${methodName} to fail, it returned ${JSON.stringify(value)}`)
  } catch (err) {
    return err as Error & { code?: string; seq?: number }
  }
}

/** An assert.rejects check: a DivergenceError naming `seq` and `field`. */
export function expectDivergence(seq: number, field: string) {
  return (err: unknown) => {
    assert.ok(err instanceof DivergenceError, `expected a DivergenceError, got ${String(err)}`)
    assert.equal(err.seq, seq, err.message)
    assert.equal(err.field, field, err.message)
    return true
  }
}
