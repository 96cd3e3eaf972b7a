export class FileCache {
  constructor(readonly dir: string) {}
}
