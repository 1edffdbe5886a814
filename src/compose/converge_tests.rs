//! The decision table of [`converge`]: each case is a project, what the engine has, the flags,
//! and the plan lines a user would see explained.

use super::*;
use crate::compose::model::{DependsOn, Service};

fn service(image: &str, depends_on: &[(&str, bool)]) -> Service {
    let mut s = Service {
        image: Some(image.to_string()),
        ..Service::default()
    };
    for (dep, restart) in depends_on {
        s.depends_on.insert(
            dep.to_string(),
            DependsOn {
                condition: "service_started".into(),
                required: true,
                restart: *restart,
            },
        );
    }
    s
}

/// db ← api (restart: true on db) ← web.
fn project() -> Project {
    let mut p = Project {
        name: "demo".into(),
        ..Project::default()
    };
    p.services.insert("db".into(), service("postgres", &[]));
    p.services
        .insert("api".into(), service("api", &[("db", true)]));
    p.services
        .insert("web".into(), service("web", &[("api", false)]));
    p
}

fn order(p: &Project) -> Vec<String> {
    ServiceGraph::new(p).unwrap().start_order()
}

/// The running containers `up` made from `p`, one per service.
fn up_to_date(p: &Project) -> Observed {
    let containers = p
        .services
        .iter()
        .map(|(name, s)| running(name, 1, s))
        .collect();
    Observed {
        containers,
        image_ids: HashMap::new(),
    }
}

fn running(service: &str, number: u32, s: &Service) -> Existing {
    Existing {
        id: format!("id-{service}-{number}"),
        name: format!("demo-{service}-{number}"),
        service: service.to_string(),
        number,
        config_hash: plan::service_config_hash(s),
        config_fields: plan::service_field_digests(s),
        running: true,
        image_id: "sha256:aaa".into(),
    }
}

fn lines(p: &Project, observed: &Observed, flags: &Flags) -> Vec<String> {
    converge(p, &order(p), &[], observed, flags)
        .unwrap()
        .lines()
}

#[test]
fn a_new_project_creates_every_service_in_dependency_levels() {
    let p = project();
    let plan = converge(&p, &order(&p), &[], &Observed::default(), &Flags::default()).unwrap();
    let levels: Vec<Vec<&str>> = plan
        .levels
        .iter()
        .map(|l| l.iter().map(|s| s.service.as_str()).collect())
        .collect();
    assert_eq!(levels, [["db"], ["api"], ["web"]]);
    assert_eq!(
        plan.lines(),
        [
            "demo-db-1: create (not found)",
            "demo-api-1: create (not found)",
            "demo-web-1: create (not found)"
        ]
    );
}

#[test]
fn changed_environment_recreates_that_service_only() {
    let mut p = project();
    let observed = up_to_date(&p);
    p.services["web"]
        .environment
        .insert("MODE".into(), Some("fast".into()));
    assert_eq!(
        lines(&p, &observed, &Flags::default()),
        [
            "demo-db-1: keep (up to date)",
            "demo-api-1: keep (up to date)",
            "demo-web-1: recreate (config changed: environment)"
        ]
    );
}

#[test]
fn recreating_a_dependency_restarts_dependants_that_ask_for_it() {
    let mut p = project();
    let observed = up_to_date(&p);
    p.services["db"].command = Some(vec!["postgres".into(), "-N".into(), "5".into()]);
    // api declares restart: true on db; web's dependency on api has no restart.
    assert_eq!(
        lines(&p, &observed, &Flags::default()),
        [
            "demo-db-1: recreate (config changed: command)",
            "demo-api-1: restart (dependency db recreated)",
            "demo-web-1: keep (up to date)"
        ]
    );
}

#[test]
fn no_recreate_keeps_changed_containers_and_force_recreate_replaces_unchanged_ones() {
    let mut p = project();
    let mut observed = up_to_date(&p);
    observed.containers[2].running = false;
    p.services["api"].user = Some("1000".into());
    assert_eq!(
        lines(&p, &observed, &Flags::new(false, true, false)),
        [
            "demo-db-1: keep (up to date)",
            "demo-api-1: keep (changed, kept by --no-recreate)",
            "demo-web-1: start (not running)"
        ]
    );
    let forced = lines(
        &project(),
        &up_to_date(&project()),
        &Flags::new(true, false, false),
    );
    assert!(
        forced
            .iter()
            .all(|l| l.ends_with("recreate (forced recreate)")),
        "{forced:?}"
    );
}

#[test]
fn dependencies_follow_always_recreate_deps_not_force_recreate() {
    let p = project();
    let observed = up_to_date(&p);
    let web = ["web".to_string()];
    let plan = |flags: &Flags| {
        converge(&p, &order(&p), &web, &observed, flags)
            .unwrap()
            .lines()
    };
    assert_eq!(
        plan(&Flags::new(true, false, false)),
        [
            "demo-db-1: keep (up to date)",
            "demo-api-1: keep (up to date)",
            "demo-web-1: recreate (forced recreate)"
        ]
    );
    assert_eq!(
        plan(&Flags::new(false, false, true)),
        [
            "demo-db-1: recreate (forced recreate)",
            // Recreated itself, so its restart: true on db needs nothing more.
            "demo-api-1: recreate (forced recreate)",
            "demo-web-1: keep (up to date)"
        ]
    );
}

#[test]
fn a_new_image_for_the_same_name_recreates() {
    let p = project();
    let mut observed = up_to_date(&p);
    observed.image_ids.insert("web".into(), "sha256:bbb".into());
    observed.image_ids.insert("db".into(), "aaa".into());
    assert_eq!(
        lines(&p, &observed, &Flags::default())[2],
        "demo-web-1: recreate (image changed)"
    );
    assert_eq!(
        lines(&p, &observed, &Flags::default())[0],
        "demo-db-1: keep (up to date)"
    );
}

#[test]
fn orphans_are_removed_only_with_remove_orphans() {
    let p = project();
    let mut observed = up_to_date(&p);
    observed
        .containers
        .push(running("old", 1, &service("old", &[])));
    let plan = converge(&p, &order(&p), &[], &observed, &Flags::default()).unwrap();
    assert_eq!(plan.orphans_kept, ["demo-old-1"]);
    assert!(plan.orphans_removed.is_empty());
    let flags = Flags {
        remove_orphans: true,
        ..Flags::default()
    };
    let plan = converge(&p, &order(&p), &[], &observed, &flags).unwrap();
    assert!(plan.orphans_kept.is_empty());
    assert_eq!(plan.lines()[0], "demo-old-1: remove (orphaned container)");
}

#[test]
fn services_left_out_of_this_run_are_not_orphans() {
    // `up web`: the loader keeps web and its dependencies, the rest are disabled, not gone.
    let whole = project();
    let observed = up_to_date(&whole);
    let mut p = whole.clone();
    p.services.shift_remove("web");
    p.disabled_services = vec!["web".into()];
    let flags = Flags {
        remove_orphans: true,
        ..Flags::default()
    };
    let plan = converge(&p, &order(&p), &[], &observed, &flags).unwrap();
    assert!(plan.orphans_removed.is_empty(), "{:?}", plan.lines());
    let plan = converge(&p, &order(&p), &[], &observed, &Flags::default()).unwrap();
    assert!(plan.orphans_kept.is_empty());
    // A service no file defines any more still is one.
    p.disabled_services.clear();
    let plan = converge(&p, &order(&p), &[], &observed, &Flags::default()).unwrap();
    assert_eq!(plan.orphans_kept, ["demo-web-1"]);
}

#[test]
fn scaling_up_numbers_after_the_highest_and_down_keeps_the_lowest_up_to_date() {
    let mut p = project();
    p.services["web"].scale = Some(3);
    let web = |plan: Plan| -> Vec<String> {
        plan.lines()
            .into_iter()
            .filter(|l| l.starts_with("demo-web"))
            .collect()
    };
    let observed = up_to_date(&p);
    assert_eq!(
        web(converge(&p, &order(&p), &[], &observed, &Flags::default()).unwrap()),
        [
            "demo-web-1: keep (up to date)",
            "demo-web-2: create (scale up to 3)",
            "demo-web-3: create (scale up to 3)"
        ]
    );

    // Three replicas, #1 made from an older file: scaling to 2 removes the obsolete #1 and
    // keeps 2 and 3; `--scale` overrides `scale:`.
    let current = p.services["web"].clone();
    let mut observed = up_to_date(&p);
    observed.containers.retain(|c| c.service != "web");
    let mut old = running("web", 1, &current);
    old.config_hash = "older".into();
    observed.containers.push(old);
    observed.containers.push(running("web", 2, &current));
    observed.containers.push(running("web", 3, &current));
    let flags = Flags {
        scale: [("web".to_string(), 2)].into_iter().collect(),
        ..Flags::default()
    };
    assert_eq!(
        web(converge(&p, &order(&p), &[], &observed, &flags).unwrap()),
        [
            "demo-web-1: remove (scale down to 2)",
            "demo-web-2: keep (up to date)",
            "demo-web-3: keep (up to date)"
        ]
    );
    // All up to date: scaling to 1 keeps #1.
    observed.containers.retain(|c| c.service != "web");
    for n in 1..=3 {
        observed.containers.push(running("web", n, &current));
    }
    let flags = Flags {
        scale: [("web".to_string(), 1)].into_iter().collect(),
        ..Flags::default()
    };
    assert_eq!(
        web(converge(&p, &order(&p), &[], &observed, &flags).unwrap()),
        [
            "demo-web-2: remove (scale down to 1)",
            "demo-web-3: remove (scale down to 1)",
            "demo-web-1: keep (up to date)"
        ]
    );
}

#[test]
fn replicas_come_from_scale_or_deploy_and_refuse_a_fixed_container_name() {
    let mut p = project();
    p.services["web"]
        .extra
        .insert("deploy".into(), serde_json::json!({"replicas": 2}));
    assert_eq!(replicas(&p, "web", &Flags::default()), Ok(2));
    p.services["db"].container_name = Some("pg".into());
    assert_eq!(replicas(&p, "db", &Flags::default()), Ok(1));
    let flags = Flags {
        scale: [("db".to_string(), 2)].into_iter().collect(),
        ..Flags::default()
    };
    let e = converge(&p, &order(&p), &[], &Observed::default(), &flags).unwrap_err();
    assert_eq!(
        e.to_string(),
        "The \"db\" service is using the custom container name \"pg\". Docker requires each container to have a unique name. Remove the custom name to scale the service"
    );
    let flags = Flags {
        scale: [("nope".to_string(), 2)].into_iter().collect(),
        ..Flags::default()
    };
    let e = converge(&p, &order(&p), &[], &Observed::default(), &flags).unwrap_err();
    assert_eq!(e.to_string(), "no such service: nope");
}

#[test]
fn changed_fields_compare_recorded_digests() {
    assert_eq!(
        changed_fields("command=1,image=2", "image=2,user=3"),
        ["command", "user"]
    );
    assert!(changed_fields("", "image=2").is_empty());
}
