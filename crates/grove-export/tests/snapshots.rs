//! Snapshots of the CTS and Canopy exports: any change to the mapping shows up in review.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use grove_config::{load, LoadOptions};
use grove_export::{compose, kubernetes, to_stream, Options};

fn plan(name: &str, env: Option<&str>) -> grove_plan::Plan {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .join("grove.toml");
    let mut opts = LoadOptions {
        environment: env.map(str::to_string),
        ..Default::default()
    };
    opts.vars
        .insert("DJANGO_SECRET_KEY".into(), "not-in-any-snapshot".into());
    let loaded = load(&file, &opts).unwrap_or_else(|e| panic!("{:#?}", e.errors));
    let mut plan = grove_plan::build(&loaded.stack, None).unwrap();
    // Snapshots must not depend on where the repository is checked out.
    plan.root = "/srv/stack".into();
    plan
}

#[test]
fn cts_and_canopy_exports() {
    for (name, env) in [("cts", None), ("cts", Some("production")), ("canopy", None)] {
        let p = plan(name, env);
        let (header, docs) = kubernetes(&p, &Options::default()).unwrap();
        let text = to_stream(&header, &docs);
        assert!(!text.contains("not-in-any-snapshot"));
        let label = format!("{name}-{}", env.unwrap_or("base"));
        insta::assert_snapshot!(format!("{label}-kubernetes"), text);
        let (header, body) = compose(&p, &Options::default()).unwrap();
        insta::assert_snapshot!(
            format!("{label}-compose"),
            format!("{}\n{body}", header.join("\n"))
        );
    }
}
