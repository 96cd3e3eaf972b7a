// The part of cls-hooked the tests use (Sequelize.useCLS takes the namespace).
declare module 'cls-hooked' {
  export interface Namespace {
    get(key: string): unknown;
    set<T>(key: string, value: T): T;
    run(fn: (...args: unknown[]) => void): void;
  }
  export function createNamespace(name: string): Namespace;
}
