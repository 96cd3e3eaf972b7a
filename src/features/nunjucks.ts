/**
 * Nunjucks tags caching template fragments:
 *
 *   {% cached_as posts, timeout=60, extra=user.id %} ... {% endcached_as %}
 *   {% cacheoped_as posts %} ... {% endcacheoped_as %}      (also cacheopedas)
 *   {% cached timeout=600, extra=lang %} ... {% endcached %}  (cache_key= is extra=)
 *   {% cached name='menu' %} ... {% endcached %}             (invalidateFragment('menu'))
 *
 * The tags are asynchronous (a cache read is a Redis round trip), so templates
 * using them render with a callback or `renderAsync`. nunjucks is an optional
 * peer dependency: it is required only when an extension is created.
 *
 * Two small hooks are put on the nunjucks module, once: `compiler.compile` is
 * wrapped so the tags learn which template they are parsed in (the parser
 * alone does not know), and `Template#render` counts synchronous renders, so
 * that a tag reached by one fails with a clear CacheopsError instead of the
 * render silently returning nothing.
 */
import { createHash } from 'node:crypto';
import type { CacheopsCore } from '../core/cacheops-core';
import { checkTimeout, profileFor } from '../core/config';
import { CacheopsError } from '../core/errors';
import type { Cacheops } from '../install';
import { extrasOf, fragmentHash, invalidateFragmentOf, namedFragmentId, rememberPrefix, templateFragmentId } from './nunjucks-keys';
import { isSample, sampleDependencies } from './function-samples';
import { decodeRaw, encodeRaw } from '../core/serialize';
import type { ValueCodec } from '../core/read-plan';

const AS_TAGS = ['cached_as', 'cacheoped_as', 'cacheopedas'] as const;
const TAGS = [...AS_TAGS, 'cached'] as const;
/** A fragment's rendered HTML as stored; bytes holding anything but a string are no fragment. */
const HTML_CODEC: ValueCodec<string> = {
  encode: (html) => encodeRaw(html),
  decode: (bytes) => {
    const raw = decodeRaw(bytes);
    return raw && typeof raw.value === 'string' ? { value: raw.value } : undefined;
  },
};

const KEYWORDS = new Set(['timeout', 'extra', 'cache_key', 'name', 'lock']);

// ---- the few nunjucks shapes used here (nunjucks ships no types of its own) ----

interface NjToken { readonly value: string; readonly lineno: number; readonly colno: number }
interface NjNode { readonly lineno: number; readonly colno: number; children: NjNode[]; readonly key?: { readonly value?: unknown } }
interface NjParser {
  nextToken(): NjToken;
  parseSignature(tolerant: boolean | null, noParens: boolean): NjNode;
  advanceAfterBlockEnd(name?: string): NjToken;
  parseUntilBlocks(...names: string[]): NjNode;
  fail(message: string, lineno?: number, colno?: number): never;
  readonly tokens?: { readonly str?: string };
}
type NodeClass = new (...args: unknown[]) => NjNode;
interface NjNodes { readonly Literal: NodeClass; readonly KeywordArgs: NodeClass; readonly CallExtensionAsync: NodeClass }
interface NjContext { readonly env?: { readonly loaders?: readonly { readonly pathsToNames?: Record<string, string> }[] } }
type NjCallback = (err: unknown, result?: unknown) => void;
type NjBody = (cb: NjCallback) => unknown;
interface NunjucksModule {
  readonly Template: { prototype: { render: (...args: unknown[]) => unknown } };
  readonly compiler: { compile: (...args: unknown[]) => unknown };
  readonly runtime: { markSafe(html: string): unknown };
}

/** The environment methods renderAsync needs (a nunjucks Environment has them). */
export interface AsyncRenderable {
  render(name: string, context: object | undefined, callback: (err: Error | null, result: string | null) => void): unknown;
}

/**
 * Renders a template asynchronously; the promise form of `env.render(name, ctx, cb)`.
 * @example
 * const html = await renderAsync(env, 'posts.njk', { posts: Post });
 */
export function renderAsync(env: AsyncRenderable, name: string, context: object = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    env.render(name, context, (err, result) => (err ? reject(err) : resolve(result ?? '')));
  });
}

// ---- hooks on the nunjucks module --------------------------------------------

interface CompileInfo {
  /** The template's path (loader path, or undefined for a string template). */
  readonly path: string | undefined;
  readonly src: unknown;
  /** line -> how many tags start on it so far. */
  readonly lines: Map<number, number>;
}

interface Hooks {
  readonly compiling: CompileInfo[];
  syncDepth: number;
  misuse: CacheopsError | undefined;
}

/** Kept on the nunjucks module itself, so that two copies of this package share one set of hooks. */
const HOOKED = Symbol.for('sequelize-cacheops.nunjucks-hooks');

function hooksOf(nj: NunjucksModule): Hooks {
  const slot = nj as unknown as Record<symbol, Hooks | undefined>;
  const existing = slot[HOOKED];
  if (existing) return existing;
  const hooks: Hooks = { compiling: [], syncDepth: 0, misuse: undefined };
  slot[HOOKED] = hooks;
  const compile = nj.compiler.compile;
  nj.compiler.compile = function compileWithName(this: unknown, ...args: unknown[]) {
    const [src, , , name] = args;
    hooks.compiling.push({ path: typeof name === 'string' && name !== '' ? name : undefined, src, lines: new Map() });
    try {
      return compile.apply(this, args);
    } finally {
      hooks.compiling.pop();
    }
  };
  const proto = nj.Template.prototype;
  const render = proto.render;
  proto.render = function renderCountingSync(this: unknown, ...args: unknown[]) {
    if (args.some((a) => typeof a === 'function')) return render.apply(this, args);
    hooks.syncDepth += 1;
    try {
      return render.apply(this, args);
    } catch (error) {
      const misuse = hooks.misuse;
      if (misuse) throw new CacheopsError(misuse.message, { cause: error });
      throw error;
    } finally {
      hooks.syncDepth -= 1;
      if (hooks.syncDepth === 0) hooks.misuse = undefined;
    }
  };
  return hooks;
}

function loadNunjucks(): NunjucksModule {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('nunjucks') as NunjucksModule;
  } catch (error) {
    throw new CacheopsError('CacheopsExtension needs the nunjucks package: npm install nunjucks', { cause: error });
  }
}

// ---- the tags ------------------------------------------------------------------

/** What the parser knows of one tag, passed to run() as a literal. */
interface TagMeta {
  readonly tag: string;
  /** Path of the template as compiled, or `string:<sha1>` of an unnamed template's source. */
  readonly template: string;
  readonly line: number;
  /** `'12'` for the first tag starting on line 12, `'12:30'` for another one on it. */
  readonly pos: string;
}

function sourceId(src: unknown): string {
  return `string:${createHash('sha1').update(typeof src === 'string' ? src : JSON.stringify(src) ?? '').digest('hex').slice(0, 16)}`;
}

/** The name the loader knows a template path by ('posts/list.njk'), else the path itself. */
function templateName(context: NjContext, path: string): string {
  for (const loader of context.env?.loaders ?? []) {
    const name = loader.pathsToNames?.[path];
    if (typeof name === 'string') return name;
  }
  return path;
}

interface TagArgs {
  readonly samples: unknown[];
  readonly kw: Record<string, unknown>;
  readonly body: NjBody;
  readonly done: NjCallback;
}

function splitArgs(args: unknown[]): TagArgs {
  const done = args.pop() as NjCallback;
  const body = args.pop() as NjBody;
  const last = args[args.length - 1];
  const kw: Record<string, unknown> = {};
  if (typeof last === 'object' && last !== null && (last as { __keywords?: unknown }).__keywords === true) {
    args.pop();
    for (const [k, v] of Object.entries(last)) if (k !== '__keywords') kw[k] = v;
  }
  return { samples: args, kw, body, done };
}

function renderBody(body: NjBody): Promise<string> {
  return new Promise((resolve, reject) => {
    body((err, html) => (err ? reject(err) : resolve(String(html ?? ''))));
  });
}

/** Hands the result to the template; an error the rest of the template throws goes back into its callback chain. */
function deliver(done: NjCallback, error: unknown, html?: unknown): void {
  try {
    if (error) done(error);
    else done(null, html);
  } catch (thrown) {
    if (error) throw thrown;
    done(thrown);
  }
}

/**
 * The nunjucks extension: `env.addExtension('cacheops', new CacheopsExtension(cacheops))`
 * (or `cacheops.addNunjucksExtension(env)`).
 *
 * @example
 * const env = new nunjucks.Environment(new nunjucks.FileSystemLoader('views'));
 * env.addExtension('cacheops', new CacheopsExtension(cacheops));
 * const html = await renderAsync(env, 'posts.njk', { posts: Post.scope('published') });
 * await invalidateFragment('posts.njk', 3);
 */
export class CacheopsExtension {
  /** The tags nunjucks hands to parse(). */
  readonly tags: readonly string[] = TAGS;
  /** Fragments are already-rendered HTML: never escaped again. */
  readonly autoescape = false;
  /**
   * The result is also marked safe: nunjucks' transformer rebuilds an
   * extension node whose body holds async filters and loses `autoescape`.
   */
  private readonly markSafe: (html: string) => unknown;
  private readonly hooks: Hooks;

  constructor(readonly cacheops: Cacheops) {
    if (!cacheops || typeof cacheops !== 'object' || !(cacheops as { core?: unknown }).core) {
      throw new CacheopsError('CacheopsExtension: give the object installCacheops returned');
    }
    const nj = loadNunjucks();
    this.hooks = hooksOf(nj);
    this.markSafe = nj.runtime.markSafe;
  }

  private get core(): CacheopsCore {
    return this.cacheops.core;
  }

  /** Drops one fragment: `(template, line, ...extras)` or `(name, ...extras)`. */
  invalidateFragment(nameOrTemplate: string, ...extras: unknown[]): Promise<boolean> {
    return invalidateFragmentOf(this.cacheops, nameOrTemplate, extras);
  }

  /** Called by the nunjucks parser for each of `tags`. */
  parse(parserArg: unknown, nodesArg: unknown): unknown {
    const parser = parserArg as NjParser;
    const nodes = nodesArg as NjNodes;
    const tok = parser.nextToken();
    const tag = tok.value;
    const args = parser.parseSignature(null, true);
    parser.advanceAfterBlockEnd(tag);
    const body = parser.parseUntilBlocks(`end${tag}`);
    parser.advanceAfterBlockEnd();

    const positional = args.children.filter((c) => !(c instanceof nodes.KeywordArgs));
    const kwargs = args.children.find((c) => c instanceof nodes.KeywordArgs);
    const names = (kwargs?.children ?? []).map((pair) => String(pair.key?.value));
    for (const n of names) {
      if (!KEYWORDS.has(n)) parser.fail(`${tag}: unknown keyword ${n}= (known: ${[...KEYWORDS].join(', ')})`, tok.lineno, tok.colno);
    }
    if (names.includes('extra') && names.includes('cache_key')) parser.fail(`${tag}: give extra= or cache_key= (the same thing), not both`, tok.lineno, tok.colno);
    const isAs = (AS_TAGS as readonly string[]).includes(tag);
    if (isAs && positional.length === 0) parser.fail(`${tag}: give a sample first (a model, scoped model, instance or { model, where } from the context)`, tok.lineno, tok.colno);
    if (!isAs && positional.length > 0) parser.fail(`${tag}: takes only keywords (timeout=, extra=, name=); use cached_as for samples`, tok.lineno, tok.colno);

    const info = this.hooks.compiling[this.hooks.compiling.length - 1];
    const line = tok.lineno + 1;
    let pos = String(line);
    if (info) {
      const seen = info.lines.get(line) ?? 0;
      info.lines.set(line, seen + 1);
      if (seen > 0) pos = `${line}:${tok.colno + 1}`;
    } else {
      pos = `${line}:${tok.colno + 1}`;
    }
    const meta: TagMeta = { tag, template: info?.path ?? sourceId(info ? info.src : parser.tokens?.str), line, pos };
    args.children.unshift(new nodes.Literal(tok.lineno, tok.colno, JSON.stringify(meta)));
    return new nodes.CallExtensionAsync(this, 'run', args, [body]);
  }

  /** Called by compiled templates: (context, meta, ...samples, kwargs?, body, callback). */
  run(contextArg: unknown, metaJson: unknown, ...rest: unknown[]): void {
    const meta = JSON.parse(String(metaJson)) as TagMeta;
    const context = contextArg as NjContext;
    const { samples, kw, body, done } = splitArgs(rest);
    const template = templateName(context, meta.template);
    if (this.hooks.syncDepth > 0) {
      const misuse = new CacheopsError(`{% ${meta.tag} %} in ${template} (line ${meta.line}) reads the cache asynchronously: render this template with a callback, env.render(name, context, (err, html) => ...), or with renderAsync(env, name, context)`);
      this.hooks.misuse = misuse;
      throw misuse;
    }
    this.fragment(meta, template, samples, kw, body).then(
      (html) => deliver(done, null, this.markSafe(html)),
      (error: unknown) => deliver(done, error),
    );
  }

  private async fragment(meta: TagMeta, template: string, samples: readonly unknown[], kw: Record<string, unknown>, body: NjBody): Promise<string> {
    const core = this.core;
    const where = `{% ${meta.tag} %} in ${template} (line ${meta.line})`;
    samples.forEach((s, i) => {
      if (s === undefined || s === null) throw new CacheopsError(`${where}: sample ${i + 1} is ${String(s)}; is it in the template context?`);
      if (!isSample(s)) throw new CacheopsError(`${where}: sample ${i + 1} is not a model, a scoped model, an instance or { model, where } (a model reached as obj.Model is wrapped by nunjucks: put it in the context directly)`);
    });
    if (kw['lock'] !== undefined && typeof kw['lock'] !== 'boolean') throw new CacheopsError(`${where}: lock= must be true or false`);
    if (kw['name'] !== undefined && (typeof kw['name'] !== 'string' || kw['name'] === '')) throw new CacheopsError(`${where}: name= must be a non-empty string`);
    const admission = core.gate.admit();
    if (!admission) return renderBody(body);

    const { deps, models } = sampleDependencies(core, samples, where);
    let timeout: number;
    if (kw['timeout'] !== undefined) timeout = checkTimeout(kw['timeout'], `${where}: timeout`);
    else {
      const timeouts = models.map((m) => profileFor(core.config, m.name)?.timeout).filter((x): x is number => x !== undefined);
      timeout = timeouts.length ? Math.min(...timeouts) : core.config.defaultTimeout;
    }
    const id = typeof kw['name'] === 'string' ? namedFragmentId(kw['name']) : templateFragmentId(template, meta.pos);
    const prefix = core.prefixFor(deps.map((d) => d.table));
    rememberPrefix(core, id, prefix);
    return core.readCached<string>({
      prefix,
      hash: fragmentHash(id, extrasOf(kw['extra'] ?? kw['cache_key'])),
      deps,
      timeout,
      staleWhileRevalidate: 0,
      lock: kw['lock'] === true,
      admission,
      codec: HTML_CODEC,
      near: undefined,
      localGet: false,
      sample: false,
      op: 'fragment',
      fn: typeof kw['name'] === 'string' ? kw['name'] : `${template}:${meta.pos}`,
    }, () => renderBody(body));
  }
}
