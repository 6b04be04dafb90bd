// Prints graphql-js's standard introspection query, the one GraphiQL, Apollo tooling,
// graphql-codegen, Postman and schemathesis send (all options on).
import { getIntrospectionQuery } from 'graphql';

process.stdout.write(
  getIntrospectionQuery({
    descriptions: true,
    specifiedByUrl: true,
    directiveIsRepeatable: true,
    schemaDescription: true,
    inputValueDeprecation: true,
  }),
);
