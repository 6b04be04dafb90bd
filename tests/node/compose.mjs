// Composes a supergraph from Tenantry's subgraph SDL (read from stdin) and a second subgraph
// that extends `Tenant` and references `Plan`, with The Guild's federation composition (the
// MIT drop-in for @apollo/composition). Prints {"errors": [...]} or {"supergraphSdl": "..."}.
import { readFileSync } from 'node:fs';
import { parse } from 'graphql';
import { composeServices, compositionHasErrors } from '@theguild/federation-composition';

const tenantry = readFileSync(0, 'utf8');
const accounts = `
  extend schema @link(url: "https://specs.apollo.dev/federation/v2.5", import: ["@key"])

  type Tenant @key(fields: "id") {
    id: ID!
    accountManager: String
  }

  type Plan @key(fields: "slug", resolvable: false) {
    slug: String!
  }

  type Deal {
    id: ID!
    tenant: Tenant!
    plan: Plan!
  }

  type Query {
    deals: [Deal!]!
  }
`;

const result = composeServices([
  { name: 'tenantry', typeDefs: parse(tenantry), url: 'http://127.0.0.1:8080/graphql' },
  { name: 'accounts', typeDefs: parse(accounts), url: 'http://127.0.0.1:8081/graphql' },
]);

if (compositionHasErrors(result)) {
  process.stdout.write(JSON.stringify({ errors: result.errors.map((e) => e.message) }));
} else {
  process.stdout.write(JSON.stringify({ supergraphSdl: result.supergraphSdl }));
}
