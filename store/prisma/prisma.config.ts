// Prisma 7 configuration for Orrery's shared database (copy it next to your web app's package.json and adjust the
// two paths). The schema file has no datasource `url` since Prisma 7: Migrate reads it from here, and the client
// gets a driver adapter (`new PrismaClient({ adapter: new PrismaPg({ connectionString }) })`).
// `run.py stack status` prints the embedded stack's DATABASE_URL; see docs/store.md "Prisma Migrate".
import { defineConfig, env } from "prisma/config";

export default defineConfig({
  schema: "../schema.prisma",
  migrations: { path: "migrations" },
  datasource: { url: env("DATABASE_URL") },
});
