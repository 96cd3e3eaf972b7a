/**
 * The savepoints of one transaction as the database holds them, followed
 * from the statements sent on its connection, so that a rolled back savepoint
 * drops exactly the invalidations of the writes the database undid.
 *
 * What the databases do with names (PostgreSQL, SQLite, MySQL/MariaDB):
 * `ROLLBACK TO SAVEPOINT x` goes back to the most recent savepoint named x and
 * keeps it, destroying the ones opened after it; `RELEASE SAVEPOINT x` removes
 * the most recent x and every later one. PostgreSQL and SQLite keep older
 * savepoints of a reused name (reachable again once the newer is released);
 * MySQL and MariaDB replace an older savepoint of the same name.
 *
 * The stack stops dropping anything (for the rest of the transaction) as soon
 * as it cannot follow the database exactly: a savepoint-like statement it
 * cannot parse, a name it does not know, names that differ only in case.
 * A savepoint opened while a write of the same transaction was running is
 * never taken as the start of what a rollback undoes.
 */

export interface SavepointStatement {
  readonly kind: 'savepoint' | 'rollback' | 'release';
  /** The name as the database compares it; undefined when the statement could not be parsed. */
  readonly name: string | undefined;
}

// Comments before the statement, as raw-sql.ts allows them.
const LEAD = String.raw`^\s*(?:\/\*[\s\S]*?\*\/\s*|--[^\n]*\n\s*)*`;
const NAME = String.raw`("(?:[^"]|"")+"|\x60(?:[^\x60]|\x60\x60)+\x60|\[[^\]]+\]|[A-Za-z_][\w$]*)`;
const TAIL = String.raw`\s*;?\s*$`;
const SAVEPOINT = new RegExp(`${LEAD}savepoint\\s+${NAME}${TAIL}`, 'i');
const ROLLBACK_TO = new RegExp(`${LEAD}rollback\\s+(?:work\\s+|transaction\\s+)?to\\s+(?:savepoint\\s+)?${NAME}${TAIL}`, 'i');
const RELEASE = new RegExp(`${LEAD}release\\s+(?:savepoint\\s+)?${NAME}${TAIL}`, 'i');
/** A plain ROLLBACK / COMMIT of the whole transaction: not a savepoint statement. */
const WHOLE = new RegExp(`${LEAD}(?:rollback|commit|end|begin|start)(?:\\s+(?:work|transaction|deferred|immediate|exclusive))*(?:\\s+isolation[\\s\\S]*)?${TAIL}`, 'i');
/** Words that may open, undo or release a savepoint somewhere in a text. */
const SUSPECT = /\b(?:savepoint|rollback|release)\b/i;

function unquote(raw: string): { readonly text: string; readonly quoted: boolean } {
  const q = raw[0];
  if (q === '"') return { text: raw.slice(1, -1).replace(/""/g, '"'), quoted: true };
  if (q === '`') return { text: raw.slice(1, -1).replace(/``/g, '`'), quoted: true };
  if (q === '[') return { text: raw.slice(1, -1), quoted: true };
  return { text: raw, quoted: false };
}

/**
 * The savepoint statement a SQL text is, if any: undefined for any other
 * statement, a statement with `name: undefined` for a text that may open,
 * roll back or release a savepoint but is not one plain such statement.
 */
export function parseSavepointStatement(sql: string, dialect: string): SavepointStatement | undefined {
  if (!SUSPECT.test(sql)) return undefined;
  for (const [kind, re] of [['savepoint', SAVEPOINT], ['rollback', ROLLBACK_TO], ['release', RELEASE]] as const) {
    const m = re.exec(sql);
    if (m?.[1] !== undefined) {
      const { text, quoted } = unquote(m[1]);
      // PostgreSQL folds unquoted names to lower case; the others compare names as written (see matching).
      return { kind, name: dialect === 'postgres' && !quoted ? text.toLowerCase() : text };
    }
  }
  if (WHOLE.test(sql)) return undefined;
  // A savepoint word inside a longer text (several statements, a function body, a column named
  // release...): it may or may not have moved the stack.
  return { kind: 'savepoint', name: undefined };
}

interface Entry {
  readonly name: string;
  /** When the savepoint was in place (the clock after its statement completed). */
  readonly at: number;
  /** No write of the transaction ran while it was opened. */
  readonly clean: boolean;
}

/** What a rollback undid: the invalidations queued after `after` and before `before`. */
export interface Undone {
  readonly after: number;
  readonly before: number;
}

export interface PendingStatement {
  /** The statement succeeded: updates the stack, and says what a rollback undid (if it can be known). */
  succeeded(tick: () => number): Undone | undefined;
}

const NOTHING: PendingStatement = { succeeded: () => undefined };

export class SavepointStack {
  private readonly entries: Entry[] = [];
  private running = 0;
  private started = 0;
  private exact = true;

  /** A write starts on the transaction's connection; the returned function ends it. */
  writeStarted(): () => void {
    this.running += 1;
    this.started += 1;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.running -= 1;
    };
  }

  /** Whether rollbacks still drop invalidations (false once the stack may differ from the database's). */
  get followed(): boolean {
    return this.exact;
  }

  /** A savepoint statement is about to be sent; `tick` reads the next value of the clock. */
  sending(statement: SavepointStatement, dialect: string, tick: () => number): PendingStatement {
    const name = statement.name;
    if (name === undefined) {
      this.exact = false;
      return NOTHING;
    }
    const quietAtSend = this.running === 0;
    const startedAtSend = this.started;
    const sentAt = tick();
    return {
      succeeded: (tickAgain) => {
        if (statement.kind === 'savepoint') {
          if (dialect === 'mysql' || dialect === 'mariadb') {
            const older = this.find(name);
            if (older === 'ambiguous') this.exact = false;
            else if (older >= 0) this.entries.splice(older, 1);
          }
          this.entries.push({ name, at: tickAgain(), clean: quietAtSend && this.started === startedAtSend });
          return undefined;
        }
        const index = this.find(name);
        if (index === 'ambiguous' || index < 0) {
          // The database reached a savepoint this stack does not know (or cannot tell which).
          this.exact = false;
          return undefined;
        }
        const entry = this.entries[index];
        if (statement.kind === 'release') {
          this.entries.splice(index);
          return undefined;
        }
        this.entries.splice(index + 1);
        if (!this.exact || !entry?.clean) return undefined;
        return { after: entry.at, before: sentAt };
      },
    };
  }

  /** The most recent savepoint of a name; 'ambiguous' when names differing only in case are held. */
  private find(name: string): number | 'ambiguous' {
    const folded = name.toLowerCase();
    let found = -1;
    for (let i = this.entries.length - 1; i >= 0; i -= 1) {
      const e = this.entries[i];
      if (!e || e.name.toLowerCase() !== folded) continue;
      // Whether a database compares these names with or without case is not relied on.
      if (e.name !== name) return 'ambiguous';
      if (found < 0) found = i;
    }
    return found;
  }
}
