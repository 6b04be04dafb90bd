// Tenantry's GraphiQL page (served at GET /graphql with the vendored React and GraphiQL).
// Queries and mutations go to /graphql over HTTP, subscriptions to /graphql/ws
// (graphql-transport-ws, through the graphql-ws client inside GraphiQL's bundle). Whatever
// the Headers pane holds is sent with every HTTP request and, for subscriptions, as the
// connection_init payload, which is where /graphql/ws reads its token.
(function () {
  'use strict';
  var ws = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/graphql/ws';
  var fetcher = GraphiQL.createFetcher({
    url: '/graphql',
    subscriptionUrl: ws,
    // The API answers plain JSON (no @defer/@stream): no multipart reader needed.
    enableIncrementalDelivery: false,
  });
  var defaultQuery = [
    '# Tenantry\'s GraphQL API.',
    '# Paste a token into Headers below:',
    '#   {"Authorization": "Bearer <jwt>"}',
    '# (`tenantry token --role tenant_admin',
    '#   --tenant acme` prints one; the pane',
    '#   is not saved), then press Run.',
    '{',
    '  me {',
    '    role',
    '  }',
    '}',
    '',
  ].join('\n');
  ReactDOM.createRoot(document.getElementById('graphiql')).render(
    React.createElement(GraphiQL, {
      fetcher: fetcher,
      defaultQuery: defaultQuery,
      isHeadersEditorEnabled: true,
      defaultEditorToolsVisibility: 'headers',
      shouldPersistHeaders: false,
    })
  );
})();
