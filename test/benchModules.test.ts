/**
 * The benches run under tsx, outside vitest: every module of bench/ must load there (one
 * imported a test helper that imports vitest, and `npm run bench` died at its first line
 * while every test passed). Each module is imported in a child process; none runs a bench
 * on import except bench/run.ts, which is left out.
 */
import { describe, expect, it } from "@effect/vitest"
import { execFile } from "node:child_process"
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const root = fileURLToPath(new URL("..", import.meta.url))

describe("bench/", () => {
  it("every bench module loads outside vitest", async () => {
    const modules = readdirSync(new URL("../bench/", import.meta.url))
      .filter((f) => f.endsWith(".ts") && f !== "run.ts")
    expect(modules).toContain("store.ts")
    const dir = mkdtempSync(join(tmpdir(), "bench-modules-"))
    const loader = join(dir, "load.mts")
    writeFileSync(
      loader,
      modules.map((f) => `await import(${JSON.stringify(join(root, "bench", f))})\n`).join("") +
        `console.log("loaded")\n`
    )
    const result = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      execFile(
        "npx",
        ["tsx", "--tsconfig", "tsconfig.examples.json", loader],
        { cwd: root, timeout: 60_000 },
        (error, stdout, stderr) => resolve({ code: error === null ? 0 : (error.code as number | null), stdout, stderr })
      )
    }).finally(() => rmSync(dir, { recursive: true, force: true }))
    expect(result.stderr.split("\n").filter((l) => /Error/.test(l)).slice(0, 3)).toEqual([])
    expect(result.stdout.trim()).toBe("loaded")
    expect(result.code).toBe(0)
  }, 60_000)
})
