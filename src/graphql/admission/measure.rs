//! Pure measurements of a parsed GraphQL document for admission: NUL bytes, aliases and
//! depth with fragments expanded where spread, root fields of the chosen operation,
//! introspection. Each fragment is measured once (memoised), so nested spreads cannot make a
//! walk exponential, and a fragment cycle (refused later by validation) measures zero.

use std::collections::HashMap;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use async_graphql::{Value, Variables};

pub fn has_nul(query: &str, variables: &Variables) -> bool {
    fn in_value(v: &Value) -> bool {
        match v {
            Value::String(s) => s.contains('\0'),
            Value::List(items) => items.iter().any(in_value),
            Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || in_value(v)),
            _ => false,
        }
    }
    // `\u0000` is the only way to write NUL in GraphQL source (no braced escapes).
    query.contains('\0')
        || query.contains("\\u0000")
        || variables
            .iter()
            .any(|(k, v)| k.contains('\0') || in_value(v))
}

/// The operation the request runs (as async-graphql will pick it).
pub fn operation<'d>(
    doc: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<(OperationType, &'d SelectionSet)> {
    let op = match (&doc.operations, name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(map), Some(n)) => map.get(n)?,
        (DocumentOperations::Multiple(map), None) if map.len() == 1 => map.values().next()?,
        _ => return None,
    };
    Some((op.node.ty, &op.node.selection_set.node))
}

/// Folds a selection set, expanding fragment spreads. Each fragment's total is computed once
/// (memoised), so nested spreads cannot make the walk exponential; a cycle (refused later by
/// validation) counts zero.
struct Expander<'d, F> {
    doc: &'d ExecutableDocument,
    memo: HashMap<&'d str, usize>,
    visiting: Vec<&'d str>,
    /// What one field contributes itself (its children are walked by `nested`).
    own: F,
    /// Whether to walk into a field's own selection set.
    nested: bool,
}

impl<'d, F: Fn(&async_graphql::parser::types::Field) -> usize> Expander<'d, F> {
    fn count(&mut self, set: &'d SelectionSet) -> usize {
        let mut total = 0usize;
        for sel in &set.items {
            let n = match &sel.node {
                Selection::Field(f) => {
                    let own = (self.own)(&f.node);
                    if self.nested {
                        own.saturating_add(self.count(&f.node.selection_set.node))
                    } else {
                        own
                    }
                }
                Selection::InlineFragment(f) => self.count(&f.node.selection_set.node),
                Selection::FragmentSpread(s) => self.fragment(s.node.fragment_name.node.as_str()),
            };
            total = total.saturating_add(n);
        }
        total
    }

    fn fragment(&mut self, name: &'d str) -> usize {
        if let Some(n) = self.memo.get(name) {
            return *n;
        }
        if self.visiting.contains(&name) {
            return 0;
        }
        let doc = self.doc;
        let Some((key, frag)) = doc.fragments.get_key_value(name) else {
            return 0;
        };
        self.visiting.push(key.as_str());
        let n = self.count(&frag.node.selection_set.node);
        self.visiting.pop();
        self.memo.insert(key.as_str(), n);
        n
    }
}

/// Aliases in the whole document, each fragment counted once per spread (saturating).
pub fn aliases_in(doc: &ExecutableDocument) -> usize {
    let mut ex = Expander {
        doc,
        memo: HashMap::new(),
        visiting: Vec::new(),
        own: |f: &async_graphql::parser::types::Field| usize::from(f.alias.is_some()),
        nested: true,
    };
    let mut total = 0usize;
    for (_, op) in doc.operations.iter() {
        total = total.saturating_add(ex.count(&op.node.selection_set.node));
    }
    total
}

/// The deepest path of any operation: (fields on it other than `ofType`, `ofType` fields on
/// it). Fragments are measured once each (memoised); a cycle measures zero.
pub fn depth_of(doc: &ExecutableDocument) -> (usize, usize) {
    struct Depth<'d> {
        doc: &'d ExecutableDocument,
        memo: HashMap<&'d str, (usize, usize)>,
        visiting: Vec<&'d str>,
    }
    impl<'d> Depth<'d> {
        fn set(&mut self, set: &'d SelectionSet) -> (usize, usize) {
            let mut deepest = (0, 0);
            for sel in &set.items {
                let (d, o) = match &sel.node {
                    Selection::Field(f) => {
                        let (d, o) = self.set(&f.node.selection_set.node);
                        if f.node.name.node == "ofType" {
                            (d, o + 1)
                        } else {
                            (d + 1, o)
                        }
                    }
                    Selection::InlineFragment(f) => self.set(&f.node.selection_set.node),
                    Selection::FragmentSpread(s) => {
                        self.fragment(s.node.fragment_name.node.as_str())
                    }
                };
                deepest = (deepest.0.max(d), deepest.1.max(o));
            }
            deepest
        }

        fn fragment(&mut self, name: &'d str) -> (usize, usize) {
            if let Some(m) = self.memo.get(name) {
                return *m;
            }
            let doc = self.doc;
            let Some((key, frag)) = doc.fragments.get_key_value(name) else {
                return (0, 0);
            };
            if self.visiting.contains(&key.as_str()) {
                return (0, 0);
            }
            self.visiting.push(key.as_str());
            let m = self.set(&frag.node.selection_set.node);
            self.visiting.pop();
            self.memo.insert(key.as_str(), m);
            m
        }
    }
    let mut depth = Depth {
        doc,
        memo: HashMap::new(),
        visiting: Vec::new(),
    };
    doc.operations.iter().fold((0, 0), |acc, (_, op)| {
        let (d, o) = depth.set(&op.node.selection_set.node);
        (acc.0.max(d), acc.1.max(o))
    })
}

/// Root fields an operation runs (fragments expanded; `__typename` is free).
pub fn root_fields(doc: &ExecutableDocument, set: &SelectionSet) -> u32 {
    let mut ex = Expander {
        doc,
        memo: HashMap::new(),
        visiting: Vec::new(),
        own: |f: &async_graphql::parser::types::Field| usize::from(f.name.node != "__typename"),
        nested: false,
    };
    u32::try_from(ex.count(set)).unwrap_or(u32::MAX)
}

/// Whether the operation selects introspection (`__schema`, `__type`, and federation's
/// `_service`, the same schema as SDL) and nothing else at its root but `__typename`,
/// fragments included: such an operation is exempt from the complexity cap and from cost.
pub fn introspection_only(doc: &ExecutableDocument, set: &SelectionSet) -> bool {
    let mut ex = Expander {
        doc,
        memo: HashMap::new(),
        visiting: Vec::new(),
        own: |f: &async_graphql::parser::types::Field| {
            usize::from(!matches!(
                f.name.node.as_str(),
                "__schema" | "__type" | "_service" | "__typename"
            ))
        },
        nested: false,
    };
    introspects(doc) && ex.count(set) == 0
}

/// How many entity representations the operation's root `_entities` fields (aliases and
/// fragments included) are given, literally or through a variable.
pub fn entity_representations(
    doc: &ExecutableDocument,
    set: &SelectionSet,
    variables: &Variables,
    depth: u8,
) -> usize {
    if depth > 8 {
        return 0;
    }
    set.items
        .iter()
        .map(|sel| match &sel.node {
            Selection::Field(f) if f.node.name.node == "_entities" => {
                f.node.get_argument("representations").map_or(0, |arg| {
                    let value = arg
                        .node
                        .clone()
                        .into_const_with(|name| variables.get(&name).cloned().ok_or(()));
                    match value {
                        Ok(Value::List(items)) => items.len(),
                        _ => 0,
                    }
                })
            }
            Selection::Field(_) => 0,
            Selection::InlineFragment(f) => {
                entity_representations(doc, &f.node.selection_set.node, variables, depth + 1)
            }
            Selection::FragmentSpread(s) => doc
                .fragments
                .get(s.node.fragment_name.node.as_str())
                .map_or(0, |f| {
                    entity_representations(doc, &f.node.selection_set.node, variables, depth + 1)
                }),
        })
        .fold(0, usize::saturating_add)
}

pub fn first_field<'d>(
    doc: &'d ExecutableDocument,
    set: &'d SelectionSet,
    depth: u8,
) -> Option<&'d str> {
    if depth > 8 {
        return None;
    }
    set.items.iter().find_map(|sel| match &sel.node {
        Selection::Field(f) => Some(f.node.name.node.as_str()),
        Selection::InlineFragment(f) => first_field(doc, &f.node.selection_set.node, depth + 1),
        Selection::FragmentSpread(s) => doc
            .fragments
            .get(s.node.fragment_name.node.as_str())
            .and_then(|f| first_field(doc, &f.node.selection_set.node, depth + 1)),
    })
}

/// Whether the document reads `__schema`, `__type` or `_service` (federation's SDL: the schema
/// by another name) anywhere, fragments included (`__typename` is not introspection).
pub fn introspects(doc: &ExecutableDocument) -> bool {
    fn in_set(set: &SelectionSet) -> bool {
        set.items.iter().any(|sel| match &sel.node {
            Selection::Field(f) => {
                matches!(
                    f.node.name.node.as_str(),
                    "__schema" | "__type" | "_service"
                ) || in_set(&f.node.selection_set.node)
            }
            Selection::InlineFragment(f) => in_set(&f.node.selection_set.node),
            Selection::FragmentSpread(_) => false,
        })
    }
    doc.operations
        .iter()
        .any(|(_, op)| in_set(&op.node.selection_set.node))
        || doc
            .fragments
            .values()
            .any(|f| in_set(&f.node.selection_set.node))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(q: &str) -> ExecutableDocument {
        async_graphql::parser::parse_query(q).unwrap()
    }

    #[test]
    fn aliases_count_once_per_spread() {
        let d = doc("query { ...F ...F ...F } fragment F on Query { a: me { b: role } }");
        assert_eq!(aliases_in(&d), 6);
        let nested = "query { ...A ...A } fragment A on Query { ...B ...B } \
                      fragment B on Query { x: me { role } }";
        assert_eq!(aliases_in(&doc(nested)), 4);
    }

    #[test]
    fn fragment_cycles_terminate() {
        let d = doc("query { ...A } fragment A on Query { x: me { role } ...B } fragment B on Query { ...A }");
        assert!(aliases_in(&d) >= 1);
    }

    #[test]
    fn exponential_fragment_nesting_is_counted_without_blowing_up() {
        let mut q = String::from("query { ...F0 } ");
        for i in 0..40 {
            q.push_str(&format!(
                "fragment F{i} on Query {{ ...F{} ...F{} }} ",
                i + 1,
                i + 1
            ));
        }
        q.push_str("fragment F40 on Query { a: me { role } }");
        assert!(aliases_in(&doc(&q)) > 30);
    }

    #[test]
    fn depth_skips_the_of_type_chain_and_counts_fragments() {
        let q = "{ __schema { types { ...T } } } fragment T on __Type { fields { type { ofType { ofType { name } } } } }";
        assert_eq!(depth_of(&doc(q)), (5, 2));
        assert_eq!(
            depth_of(&doc("{ me { tenant { plan { slug } } } }")),
            (4, 0)
        );
    }

    #[test]
    fn introspection_alone_is_told_from_introspection_beside_data() {
        let only = |q: &str| {
            let d = doc(q);
            let (_, set) = operation(&d, None).unwrap();
            introspection_only(&d, set)
        };
        assert!(only("{ __schema { types { name } } __typename }"));
        assert!(only(
            "query { ...F } fragment F on Query { __type(name: \"X\") { name } }"
        ));
        assert!(!only("{ __schema { types { name } } me { role } }"));
        assert!(!only(
            "{ __schema { types { name } } ...F } fragment F on Query { me { role } }"
        ));
        assert!(!only("{ __typename }"));
    }

    #[test]
    fn entity_representations_are_counted_literally_and_through_variables() {
        let count = |q: &str, vars: serde_json::Value| {
            let d = doc(q);
            let (_, set) = operation(&d, None).unwrap();
            let vars = Variables::from_json(vars);
            entity_representations(&d, set, &vars, 0)
        };
        let q = "query($r: [_Any!]!) { a: _entities(representations: $r) { __typename } \
                 ...F } fragment F on Query { _entities(representations: [{}, {}]) { __typename } }";
        assert_eq!(count(q, serde_json::json!({ "r": [{}, {}, {}] })), 5);
        assert_eq!(count(q, serde_json::json!({})), 2);
        assert_eq!(count("{ me { role } }", serde_json::json!({})), 0);
    }

    #[test]
    fn introspection_is_seen_in_fragments_too() {
        assert!(introspects(&doc("{ __schema { types { name } } }")));
        assert!(introspects(&doc(
            "{ me { role } } fragment F on Query { __type(name: \"Q\") { name } }"
        )));
        assert!(!introspects(&doc("{ __typename me { role } }")));
    }

    #[test]
    fn a_mutation_costs_one_unit_per_root_field() {
        let d = doc(
            "mutation { a: recordUsage(resource: \"x\", amount: 1) { used } \
             b: recordUsage(resource: \"x\", amount: 1) { used } ...M __typename } \
             fragment M on Mutation { c: recordUsage(resource: \"x\", amount: 1) { used } }",
        );
        let (ty, set) = operation(&d, None).unwrap();
        assert_eq!(ty, OperationType::Mutation);
        assert_eq!(root_fields(&d, set), 3);
    }

    #[test]
    fn nul_in_text_or_variables_is_seen() {
        let vars = Variables::from_json(serde_json::json!({ "a": ["ok", { "b": "x\u{0}y" }] }));
        assert!(has_nul("{ me { role } }", &vars));
        assert!(has_nul(
            r#"{ plan(slug: "a\u0000b") { slug } }"#,
            &Variables::default()
        ));
        assert!(!has_nul(
            r#"{ plan(slug: "a\u0041b") { slug } }"#,
            &Variables::default()
        ));
    }
}
