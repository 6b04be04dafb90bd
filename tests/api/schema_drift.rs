//! `schema.graphql` is the contract clients read: it must equal what the code serves.

#[test]
fn checked_in_schema_equals_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let checked_in = std::fs::read_to_string(path).expect("schema.graphql exists");
    let generated = tenantry::graphql::sdl();
    assert!(
        checked_in == generated,
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql` and commit it"
    );
}

#[test]
fn checked_in_subgraph_schema_equals_the_code() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.subgraph.graphql");
    let checked_in = std::fs::read_to_string(path).expect("schema.subgraph.graphql exists");
    assert!(
        checked_in == tenantry::graphql::federation_sdl(),
        "schema.subgraph.graphql is stale: run \
         `cargo run -- schema --federation > schema.subgraph.graphql` and commit it"
    );
}

#[test]
fn the_binary_prints_the_same_schema() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .arg("schema")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        tenantry::graphql::sdl()
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["schema", "--federation"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        tenantry::graphql::federation_sdl()
    );
}

#[test]
fn contract_names_are_present() {
    let sdl = tenantry::graphql::sdl();
    for name in [
        "me: Viewer!",
        "tenant(id: ID, slug: String): Tenant",
        "createTenant(input: CreateTenantInput!): Tenant!",
        "updateTenant(id: ID!, input: UpdateTenantInput!): Tenant!",
        "suspendTenant(id: ID!, reason: String!): Tenant!",
        "reactivateTenant(id: ID!): Tenant!",
        "deleteTenant(id: ID!): Tenant!",
        "restoreTenant(id: ID!): Tenant!",
        "enum Role",
        "scalar BigInt",
    ] {
        assert!(sdl.contains(name), "SDL lacks `{name}`");
    }
}
