/**
 * The example for the `cacheops` command (`--app templates-example/cli-app.ts`):
 * the blog's models and cacheops installation on the database `npm start` uses
 * (EXAMPLE_DB), with the same Redis (REDIS_URL) and prefix. Loading it creates
 * no table, seeds nothing and invalidates nothing: the running example's cache
 * is what the command sees.
 *
 *   npx tsx src/cli/main.ts stats --app templates-example/cli-app.ts
 *   npx tsx src/cli/main.ts invalidate Post.1 --app templates-example/cli-app.ts
 */
import { exampleDatabase, openExample } from './app';

const { sequelize } = openExample({ storage: exampleDatabase() });

export default sequelize;
