/**
 * Generators and checks for fuzzing configuration decoders (test/fuzzConfig.test.ts):
 * wild values (arbitrary JSON, arbitrary JavaScript values, and the numbers, strings and
 * keys that break naive code), "near-valid" inputs (a valid configuration with a few
 * fields replaced, keys added or fields removed), and the checks an `InvalidConfig` must
 * pass: issues that each have a path and a message, paths that exist in the input, and a
 * rendered message that names them.
 */
import { Cause, Exit, FastCheck, Option } from "effect"

const fc = FastCheck

export type Key = string | number
export type Path = ReadonlyArray<Key>

export const isRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u)

/** `["endpoints", 1, "weight"]` -> `endpoints[1].weight`, as the library writes paths. */
export const formatPath = (path: Path): string =>
  path.reduce<string>(
    (acc, key) => typeof key === "number" ? `${acc}[${key}]` : acc === "" ? String(key) : `${acc}.${String(key)}`,
    ""
  )

/** Sets an own property the way `JSON.parse` does, so `__proto__` is a key and not the prototype. */
export const setOwn = (target: object, key: Key, value: unknown): void => {
  try {
    Object.defineProperty(target, key, { value, writable: true, enumerable: true, configurable: true })
  } catch {
    // an array's `length` cannot take every value (nor be made configurable): the mutation is skipped
  }
}

// ---------------------------------------------------------------------------------------
// wild values
// ---------------------------------------------------------------------------------------

/** Objects whose `String()` throws: JSON can hold them (`{"toString": 0}`). */
export const unstringifiable: unknown = JSON.parse("{\"toString\": 0, \"valueOf\": 0}")

/** A huge string (1 MB), shared so that generating it costs nothing. */
export const hugeString = "x".repeat(1_000_000)

/** The values that break naive decoders, each on its own. */
export const specialValues: ReadonlyArray<unknown> = [
  -1,
  0,
  -0,
  NaN,
  Infinity,
  -Infinity,
  JSON.parse("1e309"),
  -JSON.parse("1e309"),
  1e308,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  2 ** 31,
  2 ** 32,
  2 ** 53 + 2,
  0.5,
  1.5,
  -0.000001,
  "",
  " ",
  "\t\n",
  "  padded  ",
  "-1",
  "0",
  "NaN",
  "Infinity",
  "1e309",
  "0x10",
  "-5 seconds",
  "0 millis",
  "1.5 nanos",
  `${"9".repeat(400)} days`,
  `${"9".repeat(400)} nanos`,
  "1 fortnight",
  "5 seconds ",
  "\u0000",
  "\ud800",
  "<redacted>",
  "__proto__",
  "constructor",
  "toString",
  "valueOf",
  "hasOwnProperty",
  "round-robin",
  "p95",
  "*",
  "redis://127.0.0.1:1",
  "http://127.0.0.1:1",
  hugeString,
  null,
  true,
  false,
  [],
  [null],
  [[]],
  [1, 2],
  ["a", ""],
  {},
  { length: 2 ** 32 },
  { length: JSON.parse("1e309") },
  { length: -1 },
  { length: "x" },
  unstringifiable,
  JSON.parse("{\"__proto__\": {\"polluted\": true}}"),
  JSON.parse("{\"constructor\": {\"prototype\": {\"polluted\": true}}}"),
  Object.create(null),
  Symbol("fuzz"),
  () => 1,
  new Date(NaN),
  BigInt(1),
  new Map([["a", 1]]),
  new Set([1]),
  new Uint8Array(3)
]

export const special: FastCheck.Arbitrary<unknown> = fc.constantFrom(...specialValues)

/** Strings that look like durations, right or wrong. */
export const durationLike: FastCheck.Arbitrary<string> = fc
  .tuple(
    fc.oneof(fc.integer({ min: -10, max: 10_000_000 }), fc.double({ noDefaultInfinity: false })),
    fc.constantFrom("nanos", "micros", "millis", "seconds", "minutes", "hours", "days", "weeks", "fortnights", "")
  )
  .map(([n, unit]) => `${n} ${unit}`)

/** Values near valid ones: small and large numbers, duration strings, short strings. */
export const plausible: FastCheck.Arbitrary<unknown> = fc.oneof(
  fc.integer({ min: -3, max: 1_000_000 }),
  fc.double(),
  durationLike,
  fc.string({ maxLength: 12 }),
  fc.boolean(),
  fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 })
)

/** Any value: JSON, JavaScript values fast-check can make, special values and near-valid ones. */
/** Arbitrary JavaScript values, wider than JSON (Map, Set, boxed values, null prototypes...). */
export const anything = fc.anything({
  maxDepth: 3,
  withBigInt: true,
  withBoxedValues: true,
  withDate: true,
  withMap: true,
  withSet: true,
  withNullPrototype: true,
  withObjectString: true,
  withSparseArray: true,
  withTypedArray: true
})

export const wild: FastCheck.Arbitrary<unknown> = fc.oneof(
  { arbitrary: special, weight: 4 },
  { arbitrary: plausible, weight: 3 },
  { arbitrary: fc.jsonValue({ maxDepth: 3 }), weight: 2 },
  { arbitrary: anything, weight: 2 }
)

/** Keys to add: typos, prototype names, path-like names, and arbitrary strings. */
export const wildKey = (fieldNames: ReadonlyArray<string>): FastCheck.Arbitrary<string> =>
  fc.oneof(
    fc.constantFrom(
      "__proto__",
      "constructor",
      "prototype",
      "toString",
      "valueOf",
      "hasOwnProperty",
      "then",
      "_tag",
      "length",
      "wieght",
      "a.b",
      "[0]",
      "",
      " ",
      ...fieldNames
    ),
    fc.string({ maxLength: 10 })
  )

// ---------------------------------------------------------------------------------------
// near-valid inputs
// ---------------------------------------------------------------------------------------

export type Mutation =
  | { readonly _tag: "replace"; readonly path: Path; readonly value: unknown }
  | { readonly _tag: "add"; readonly path: Path; readonly key: string; readonly value: unknown }
  | { readonly _tag: "remove"; readonly path: Path }

export interface NearValid {
  readonly input: unknown
  readonly mutations: ReadonlyArray<Mutation>
}

/** Every path in a JSON value (the root excluded), objects and array elements included. */
export const pathsIn = (value: unknown, at: Path = []): Array<Path> => {
  const out: Array<Path> = []
  const go = (v: unknown, p: Path) => {
    if (p.length > 0) out.push(p)
    if (Array.isArray(v)) v.forEach((x, i) => go(x, [...p, i]))
    else if (isRecord(v)) { for (const [k, x] of Object.entries(v)) go(x, [...p, k]) }
  }
  go(value, at)
  return out
}

const getAt = (value: unknown, path: Path): { readonly found: boolean; readonly value: unknown } => {
  let current = value
  for (const key of path) {
    if (typeof current !== "object" || current === null || !Object.hasOwn(current, key)) {
      return { found: false, value: undefined }
    }
    current = (current as Record<Key, unknown>)[key]
  }
  return { found: true, value: current }
}

/**
 * Applies mutations to a deep copy of a JSON value. A mutation whose place is gone is
 * skipped, and so is one inside a value an earlier mutation put in (that value may be
 * shared, like the special values, and must not change).
 */
export const applyMutations = (base: unknown, mutations: ReadonlyArray<Mutation>): unknown => {
  let root: unknown = JSON.parse(JSON.stringify(base))
  const replaced: Array<Path> = []
  const under = (path: Path, prefix: Path) => prefix.length <= path.length && prefix.every((k, i) => path[i] === k)
  for (const m of mutations) {
    if (m._tag === "replace" && m.path.length === 0) {
      root = m.value
      replaced.push([])
      continue
    }
    const parentPath = m._tag === "add" ? m.path : m.path.slice(0, -1)
    if (replaced.some((r) => under(parentPath, r))) continue
    const parent = getAt(root, parentPath)
    if (!parent.found || typeof parent.value !== "object" || parent.value === null) continue
    const target = parent.value as Record<Key, unknown>
    if (m._tag === "add") setOwn(target, m.key, m.value)
    else {
      const key = m.path[m.path.length - 1]
      if (!Object.hasOwn(target, key)) continue
      if (m._tag === "replace") {
        setOwn(target, key, m.value)
        replaced.push(m.path)
      } else if (Array.isArray(target)) target.splice(key as number, 1)
      else Reflect.deleteProperty(target, key)
    }
  }
  return root
}

/** Paths of the mutations, as the library writes them. */
export const touchedPaths = (mutations: ReadonlyArray<Mutation>): Array<string> =>
  mutations.map((m) => formatPath(m._tag === "add" ? [...m.path, m.key] : m.path))

/**
 * A valid configuration with one to three mutations: a field (or a whole section)
 * replaced by a wild value, a key added (typos, `__proto__`, `constructor`), a field
 * removed.
 */
export const nearValid = (
  base: unknown,
  options: { readonly value?: FastCheck.Arbitrary<unknown>; readonly fieldNames?: ReadonlyArray<string> } = {}
): FastCheck.Arbitrary<NearValid> => {
  const paths = pathsIn(base)
  const objectPaths: Array<Path> = [[], ...paths.filter((p) => isRecord(getAt(base, p).value))]
  const value = options.value ?? wild
  const mutation: FastCheck.Arbitrary<Mutation> = fc.oneof(
    {
      arbitrary: fc.record({ path: fc.constantFrom(...paths), value }).map((r): Mutation => ({
        _tag: "replace",
        ...r
      })),
      weight: 6
    },
    {
      arbitrary: fc
        .record({ path: fc.constantFrom(...objectPaths), key: wildKey(options.fieldNames ?? []), value })
        .map((r): Mutation => ({ _tag: "add", ...r })),
      weight: 2
    },
    {
      arbitrary: fc.constantFrom(...paths).map((path): Mutation => ({ _tag: "remove", path })),
      weight: 1
    }
  )
  return fc
    .array(mutation, { minLength: 1, maxLength: 3 })
    .map((mutations) => ({ input: applyMutations(base, mutations), mutations }))
}

// ---------------------------------------------------------------------------------------
// checks
// ---------------------------------------------------------------------------------------

/**
 * Every path of a value, as the library writes them (`endpoints[0].weight`), with the
 * value found there. Iterables other than arrays and strings (a `Set`, a `Map`, a typed
 * array) are indexed like arrays, since decoders that take iterables read them so.
 */
export const pathIndex = (input: unknown): Map<string, unknown> => {
  const out = new Map<string, unknown>()
  const seen = new Set<unknown>()
  const go = (v: unknown, p: string) => {
    out.set(p, v)
    if (typeof v !== "object" || v === null || seen.has(v)) return
    seen.add(v)
    if (Array.isArray(v) || (Symbol.iterator in v && typeof v[Symbol.iterator] === "function")) {
      let i = 0
      for (const x of Array.isArray(v) ? v : Array.from(v as Iterable<unknown>)) go(x, `${p}[${i++}]`)
      if (Array.isArray(v)) return
    }
    // own keys, not only enumerable ones: a decoder sees a boxed string's `length` too
    for (const k of Reflect.ownKeys(v)) {
      if (typeof k === "string") go((v as Record<string, unknown>)[k], p === "" ? k : `${p}.${k}`)
    }
  }
  go(input, "")
  return out
}

const parentOf = (path: string): string | undefined => {
  const m = /^(.*?)(?:\.[^.[\]]+|\[\d+\])$/.exec(path)
  return m === null ? (path === "" ? undefined : "") : m[1]
}

export interface Issue {
  readonly path: string
  readonly message: string
}

/**
 * Where an issue's path does not name a place in the input: `undefined` when it does.
 * A path names a place when the input has it, or when the issue says the field is
 * missing and its parent is an object (or the root) of the input.
 */
export const misplaced = (
  issue: Issue,
  index: Map<string, unknown>,
  options: {
    /**
     * Effect `Config` reads a scalar where a list is expected as a list of one
     * (`tags: "fast"` is `["fast"]`), so `tags[0]` names the scalar `tags`.
     */
    readonly scalarAsList?: boolean
  } = {}
): string | undefined => {
  if (index.has(issue.path)) return undefined
  if (options.scalarAsList === true) {
    const m = /^(.*)\[0\]$/.exec(issue.path)
    // an empty object reads as an empty string, a list of one empty item, the same way
    const whole = m === null ? undefined : index.get(m[1])
    const emptyObject = typeof whole === "object" && whole !== null && !Array.isArray(whole) &&
      Object.keys(whole).length === 0
    if (m !== null && index.has(m[1]) && (typeof whole !== "object" || emptyObject)) return undefined
  }
  if (/missing/i.test(issue.message)) {
    const parent = parentOf(issue.path)
    if (parent !== undefined && (parent === "" || typeof index.get(parent) === "object")) return undefined
  }
  return `${issue.path} (${issue.message}) names no place in the input`
}

/** Whether one path is the other or contains it. */
export const related = (a: string, b: string): boolean =>
  a === b || a === "" || b === "" || a.startsWith(`${b}.`) || a.startsWith(`${b}[`) || b.startsWith(`${a}.`) ||
  b.startsWith(`${a}[`)

/** What is wrong with a typed configuration error (`issues` of `{ path, message }`), or nothing. */
export const issueProblems = (error: unknown, tag: string): Array<string> => {
  const problems: Array<string> = []
  if (typeof error !== "object" || error === null || (error as { _tag?: unknown })._tag !== tag) {
    return [`expected a ${tag}, got ${safeString(error)}`]
  }
  const { issues, message } = error as { issues?: unknown; message?: unknown }
  if (!Array.isArray(issues) || issues.length === 0) problems.push("issues is empty")
  else {
    for (const issue of issues as ReadonlyArray<Partial<Issue>>) {
      if (typeof issue.path !== "string") problems.push(`an issue without a path: ${safeString(issue)}`)
      if (typeof issue.message !== "string" || issue.message.trim() === "") {
        problems.push(`an issue without a message: ${safeString(issue)}`)
      }
      if (typeof message === "string" && typeof issue.path === "string") {
        const shown = issue.path === "" ? "(root)" : issue.path
        if (!message.includes(`${shown}: `)) problems.push(`the message does not name ${shown}`)
      }
    }
  }
  if (typeof message !== "string" || message === "") problems.push("no message")
  return problems
}

/** `String(u)` that never throws, short. */
export const safeString = (u: unknown): string => {
  try {
    const text = typeof u === "string" ? u : JSON.stringify(u) ?? String(u)
    return text.length > 300 ? `${text.slice(0, 300)}...` : text
  } catch {
    try {
      return String(u).slice(0, 300)
    } catch {
      return Object.prototype.toString.call(u)
    }
  }
}

export type Outcome =
  | { readonly _tag: "Success"; readonly value: unknown }
  | { readonly _tag: "Failure"; readonly error: unknown }
  | { readonly _tag: "Defect"; readonly detail: string }

/** A success, a typed failure, or a defect (a die, an interruption, a throw). */
export const outcomeOf = (exit: Exit.Exit<unknown, unknown>): Outcome => {
  if (Exit.isSuccess(exit)) return { _tag: "Success", value: exit.value }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure) && !Cause.isDie(exit.cause) && !Cause.isInterrupted(exit.cause)) {
    return { _tag: "Failure", error: failure.value }
  }
  return { _tag: "Defect", detail: Cause.pretty(exit.cause).slice(0, 1500) }
}

/** Runs a synchronous decoder: a throw is a defect. */
export const outcomeOfSync = (
  f: () => { readonly _tag: "Left"; readonly left: unknown } | {
    readonly _tag: "Right"
    readonly right: unknown
  }
): Outcome => {
  try {
    const result = f()
    return result._tag === "Right" ? { _tag: "Success", value: result.right } : { _tag: "Failure", error: result.left }
  } catch (error) {
    return {
      _tag: "Defect",
      detail: `threw ${error instanceof Error ? error.stack ?? error.message : safeString(error)}`
    }
  }
}
