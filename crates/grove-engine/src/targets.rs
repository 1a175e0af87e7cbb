//! What `start`, `stop` and `restart` name: a unit (`web#2`), a service (`web`, all its
//! units) or an instance (`web@acme`). One resolution, for the engine's units and for a Plan.

use grove_plan::{Plan, Unit};

use crate::TargetError;

/// The unit names `targets` name among `units` (name, unit), in order, each once. A staged or
/// draining generation (`NAME~next`, `NAME~old`) answers only to its own full name; a job's
/// extra run (`NAME~run2`) to the job's too.
pub(crate) fn resolve_in<'a, I>(units: I, targets: &[String]) -> Result<Vec<String>, TargetError>
where
    I: Iterator<Item = (&'a String, &'a Unit)> + Clone,
{
    let mut out: Vec<String> = Vec::new();
    for t in targets {
        let before = out.len();
        if units.clone().any(|(name, _)| name == t) {
            out.push(t.clone());
        } else {
            for (name, unit) in units.clone() {
                // A job's extra runs (`report~run2`) are the job's; staged and draining
                // generations only their own.
                if name.contains('~') && !name.contains(crate::actor::RUN) {
                    continue;
                }
                let instance = unit
                    .instance
                    .as_deref()
                    .is_some_and(|i| format!("{}@{i}", unit.service) == *t);
                if &unit.service == t || instance {
                    out.push(name.clone());
                }
            }
        }
        if out.len() == before {
            let best = units
                .clone()
                .flat_map(|(_, u)| [u.name.as_str(), u.service.as_str()])
                .min_by_key(|c| strsim::levenshtein(c, t))
                .filter(|c| strsim::levenshtein(c, t) <= 3);
            return Err(TargetError::Unknown {
                name: t.clone(),
                hint: best
                    .map(|b| format!(", did you mean `{b}`?"))
                    .unwrap_or_default(),
            });
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|n| seen.insert(n.clone()));
    Ok(out)
}

/// The unit names `targets` name in `plan` (as [`resolve_in`]).
pub fn resolve(plan: &Plan, targets: &[String]) -> Result<Vec<String>, TargetError> {
    resolve_in(plan.units.iter(), targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let loaded = grove_config::load_str(
            std::path::Path::new("/tmp/targets/grove.toml"),
            r#"
[stack]
name = "t"

[services.web]
command = "true"
replicas = 2

[services.worker]
command = "true"

[instances.acme]
[instances.blue]

[services.app]
command = "true"
for_each_instance = true
"#,
            &grove_config::LoadOptions::default(),
        )
        .expect("stack");
        grove_plan::build(&loaded.stack, None).expect("plan")
    }

    #[test]
    fn a_service_names_its_units_an_instance_its_own_and_each_comes_once() {
        let p = plan();
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(resolve(&p, &t(&["web"])).unwrap(), t(&["web#1", "web#2"]));
        assert_eq!(
            resolve(&p, &t(&["web#2", "web", "worker"])).unwrap(),
            t(&["web#2", "web#1", "worker"])
        );
        assert_eq!(resolve(&p, &t(&["app@acme"])).unwrap(), t(&["app@acme"]));
    }

    #[test]
    fn an_unknown_name_is_refused_with_the_nearest_one() {
        let err = resolve(&plan(), &["wrker".to_string()]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no unit or service named `wrker`, did you mean `worker`?"
        );
    }
}
