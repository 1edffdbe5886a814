//! Stage 4, merge: several `-f` files (and `extends` bases) into one raw model, by docker
//! compose's rules: mappings merge key by key, sequences append, `command`/`entrypoint`/
//! `healthcheck.test` replace, list-or-mapping fields (`environment`, `labels`, …) merge by key,
//! `ports`/`volumes`/`secrets`/`configs`/… append and stay unique by their key; `!reset` drops the
//! inherited value, `!override` replaces it whole.

use indexmap::IndexMap;

use super::error::ComposeError;
use super::yaml::{MergeTag, Node, Value};

/// Drop `!reset` entries and forget tags (a file with nothing to merge into).
pub fn strip_tags(mut node: Node) -> Node {
    strip_tags_in_place(&mut node);
    node
}

/// In place: rebuilding every mapping would rehash every key of the project.
fn strip_tags_in_place(node: &mut Node) {
    node.tag = None;
    match &mut node.value {
        Value::Map(m) => {
            m.retain(|_, v| v.tag != Some(MergeTag::Reset));
            m.values_mut().for_each(strip_tags_in_place);
        }
        Value::Seq(s) => {
            s.retain(|v| v.tag != Some(MergeTag::Reset));
            s.iter_mut().for_each(strip_tags_in_place);
        }
        _ => {}
    }
}

/// Merge a later compose file into the accumulated model.
pub fn merge_files(base: Node, over: Node) -> Result<Node, ComposeError> {
    let mark = base.mark.clone();
    let (Value::Map(mut b), Value::Map(o)) = (base.value, over.value) else {
        return Err(ComposeError::Invalid {
            mark: Some(over.mark).filter(|m| m.line > 0),
            path: "(top level)".into(),
            message: "top-level object must be a mapping".into(),
        });
    };
    for (k, ov) in o {
        match ov.tag {
            Some(MergeTag::Reset) => {
                b.shift_remove(&k);
                continue;
            }
            Some(MergeTag::Override) => {
                b.insert(k, strip_tags(ov));
                continue;
            }
            None => {}
        }
        let merged = match (k.as_str(), b.shift_remove(&k)) {
            (_, None) => strip_tags(ov),
            ("services", Some(bv)) => merge_keyed(bv, ov, merge_service)?,
            ("networks" | "volumes" | "secrets" | "configs", Some(bv)) => {
                merge_keyed(bv, ov, merge_resource)?
            }
            (_, Some(bv)) => deep_merge(bv, ov),
        };
        b.insert(k, merged);
    }
    Ok(Node::new(Value::Map(b), mark))
}

fn merge_keyed(
    base: Node,
    over: Node,
    f: fn(Node, Node) -> Result<Node, ComposeError>,
) -> Result<Node, ComposeError> {
    match (base.value, over.value) {
        (Value::Map(mut b), Value::Map(o)) => {
            for (k, ov) in o {
                match (ov.tag, b.get(&k).cloned()) {
                    (Some(MergeTag::Reset), _) => {
                        b.shift_remove(&k);
                    }
                    (Some(MergeTag::Override), _) | (_, None) => {
                        b.insert(k, strip_tags(ov));
                    }
                    (None, Some(bv)) => {
                        let m = f(bv, ov)?;
                        b.insert(k, m);
                    }
                }
            }
            Ok(Node::new(Value::Map(b), base.mark))
        }
        (_, ov) => Ok(strip_tags(Node::new(ov, over.mark))),
    }
}

fn merge_resource(base: Node, over: Node) -> Result<Node, ComposeError> {
    let mut base = base;
    let mut over = over;
    for n in [&mut base, &mut over] {
        if let Some(m) = n.as_map_mut() {
            for k in ["labels", "driver_opts"] {
                if let Some(v) = m.shift_remove(k) {
                    m.insert(k.to_string(), to_mapping(v, '='));
                }
            }
        }
    }
    // ipam.config entries are keyed by subnet: a later entry for the same subnet merges into it.
    let base_cfg = base.get("ipam").and_then(|i| i.get("config")).cloned();
    let over_cfg = over.get("ipam").and_then(|i| i.get("config")).cloned();
    let mut merged = deep_merge(base, over);
    if let (Some(Value::Seq(b)), Some(Value::Seq(o))) =
        (base_cfg.map(|n| n.value), over_cfg.map(|n| n.value))
    {
        let mut out: Vec<Node> = b;
        for item in o {
            let subnet = item.get("subnet").and_then(Node::scalar_text);
            match out.iter().position(|x| {
                subnet.is_some() && x.get("subnet").and_then(Node::scalar_text) == subnet
            }) {
                Some(p) => {
                    let prev = out[p].clone();
                    out[p] = deep_merge(prev, item);
                }
                None => out.push(strip_tags(item)),
            }
        }
        if let Some(ipam) = merged
            .as_map_mut()
            .and_then(|m| m.get_mut("ipam"))
            .and_then(Node::as_map_mut)
        {
            if let Some(cfg) = ipam.get_mut("config") {
                cfg.value = Value::Seq(out);
            }
        }
    }
    Ok(merged)
}

/// Generic merge: mappings by key, sequences appended, anything else replaced.
pub fn deep_merge(base: Node, over: Node) -> Node {
    match over.tag {
        Some(MergeTag::Reset) => return Node::new(Value::Null, over.mark),
        Some(MergeTag::Override) => return strip_tags(over),
        None => {}
    }
    match (base.value, over.value) {
        (Value::Map(mut b), Value::Map(o)) => {
            for (k, ov) in o {
                if ov.tag == Some(MergeTag::Reset) {
                    b.shift_remove(&k);
                    continue;
                }
                let merged = match b.shift_remove(&k) {
                    Some(bv) => deep_merge(bv, ov),
                    None => strip_tags(ov),
                };
                b.insert(k, merged);
            }
            Node::new(Value::Map(b), base.mark)
        }
        (Value::Seq(mut b), Value::Seq(o)) => {
            b.extend(o.into_iter().map(strip_tags));
            Node::new(Value::Seq(b), base.mark)
        }
        (_, ov) => strip_tags(Node {
            value: ov,
            mark: over.mark,
            tag: None,
        }),
    }
}

/// A list of `KEY=VALUE` / `KEY` entries or a mapping, as a mapping (values keep their nodes).
pub fn to_mapping(node: Node, sep: char) -> Node {
    match node.value {
        Value::Seq(items) => {
            let mut m = IndexMap::new();
            for item in items {
                let Some(text) = item.scalar_text() else {
                    // Left for validation to report.
                    m.insert(format!("{:?}", item.kind()), item);
                    continue;
                };
                let (k, v) = match text.split_once(sep) {
                    Some((k, v)) => (
                        k.trim_end().to_string(),
                        Value::String(v.trim_start().to_string()),
                    ),
                    None => (text.clone(), Value::Null),
                };
                let (k, v) = if sep == ':' {
                    (k.trim().to_string(), v)
                } else {
                    (k, v)
                };
                m.insert(
                    k,
                    Node {
                        value: v,
                        mark: item.mark,
                        tag: item.tag,
                    },
                );
            }
            Node::new(Value::Map(m), node.mark)
        }
        v => Node {
            value: v,
            mark: node.mark,
            tag: node.tag,
        },
    }
}

/// The unicity key of a sequence entry of `field`, for fields merged "append, then unique".
fn entry_key(field: &str, item: &Node) -> Option<String> {
    match field {
        "volumes" | "devices" => match &item.value {
            Value::String(s) => {
                let parts = super::notation::split_volume_spec(s);
                Some(match parts.len() {
                    1 => parts[0].clone(),
                    _ => parts[1].clone(),
                })
            }
            Value::Map(m) => m
                .get("target")
                .and_then(Node::scalar_text)
                .or_else(|| m.get("source").and_then(Node::scalar_text)),
            _ => None,
        },
        "secrets" | "configs" => {
            // Keyed by where they land: secrets default to /run/secrets/<name>, configs to /<name>.
            let dir = if field == "secrets" {
                "/run/secrets/"
            } else {
                "/"
            };
            let t = match &item.value {
                Value::String(s) => s.clone(),
                Value::Map(m) => m
                    .get("target")
                    .and_then(Node::scalar_text)
                    .or_else(|| m.get("source").and_then(Node::scalar_text))?,
                _ => return None,
            };
            Some(if t.starts_with('/') {
                t
            } else {
                format!("{dir}{t}")
            })
        }
        _ => Some(format!("{:?}", item.to_json())),
    }
}

fn merge_unique(base: Node, over: Node, field: &str) -> Node {
    let (Value::Seq(b), Value::Seq(o)) = (&base.value, &over.value) else {
        return deep_merge(base, over);
    };
    let mut out: Vec<Node> = b.clone();
    for item in o {
        let key = entry_key(field, item);
        let pos = key.as_ref().and_then(|k| {
            out.iter()
                .position(|x| entry_key(field, x).as_ref() == Some(k))
        });
        match pos {
            Some(p) => out[p] = strip_tags(item.clone()),
            None => out.push(strip_tags(item.clone())),
        }
    }
    Node::new(Value::Seq(out), base.mark)
}

fn depends_on_mapping(node: Node) -> Node {
    match node.value {
        Value::Seq(items) => {
            let mut m = IndexMap::new();
            for item in items {
                if let Some(name) = item.scalar_text() {
                    let mut cond = IndexMap::new();
                    cond.insert(
                        "condition".to_string(),
                        Node::new(Value::String("service_started".into()), item.mark.clone()),
                    );
                    m.insert(name, Node::new(Value::Map(cond), item.mark));
                }
            }
            Node::new(Value::Map(m), node.mark)
        }
        v => Node {
            value: v,
            mark: node.mark,
            tag: node.tag,
        },
    }
}

fn networks_mapping(node: Node) -> Node {
    match node.value {
        Value::Seq(items) => {
            let mut m = IndexMap::new();
            for item in items {
                if let Some(name) = item.scalar_text() {
                    m.insert(name, Node::new(Value::Null, item.mark));
                }
            }
            Node::new(Value::Map(m), node.mark)
        }
        v => Node {
            value: v,
            mark: node.mark,
            tag: node.tag,
        },
    }
}

fn build_mapping(node: Node) -> Node {
    match node.value {
        Value::String(s) => {
            let mut m = IndexMap::new();
            m.insert(
                "context".to_string(),
                Node::new(Value::String(s), node.mark.clone()),
            );
            Node::new(Value::Map(m), node.mark)
        }
        v => Node {
            value: v,
            mark: node.mark,
            tag: node.tag,
        },
    }
}

fn seq_of(node: Node) -> Node {
    match node.value {
        Value::Seq(_) => node,
        Value::Null => Node::new(Value::Seq(vec![]), node.mark),
        _ => {
            let mark = node.mark.clone();
            Node::new(Value::Seq(vec![node]), mark)
        }
    }
}

/// Merge one service definition over another (later files, or local over an `extends` base).
pub fn merge_service(base: Node, over: Node) -> Result<Node, ComposeError> {
    let mark = base.mark.clone();
    let Value::Map(mut b) = base.value else {
        return Ok(strip_tags(over));
    };
    let Value::Map(o) = over.value else {
        return Ok(Node::new(Value::Map(b), mark));
    };
    for (k, ov) in o {
        match ov.tag {
            Some(MergeTag::Reset) => {
                b.shift_remove(&k);
                continue;
            }
            Some(MergeTag::Override) => {
                b.insert(k, strip_tags(ov));
                continue;
            }
            None => {}
        }
        let Some(bv) = b.shift_remove(&k) else {
            b.insert(k, strip_tags(ov));
            continue;
        };
        let merged = match k.as_str() {
            "command" | "entrypoint" => strip_tags(ov),
            "environment" | "labels" | "annotations" | "sysctls" => {
                deep_merge(to_mapping(bv, '='), to_mapping(ov, '='))
            }
            "extra_hosts" => merge_extra_hosts(bv, ov),
            "depends_on" => deep_merge(depends_on_mapping(bv), depends_on_mapping(ov)),
            "networks" => deep_merge(networks_mapping(bv), networks_mapping(ov)),
            "build" => merge_build(build_mapping(bv), build_mapping(ov)),
            "healthcheck" => {
                let test = ov.get("test").cloned();
                let mut m = deep_merge(bv, ov);
                if let (Some(t), Some(map)) = (test, m.as_map_mut()) {
                    map.insert("test".into(), strip_tags(t));
                }
                m
            }
            "logging" => {
                let bd = bv.get("driver").and_then(Node::scalar_text);
                let od = ov.get("driver").and_then(Node::scalar_text);
                if od.is_some() && bd != od {
                    strip_tags(ov)
                } else {
                    deep_merge(bv, ov)
                }
            }
            "ulimits" => match (bv.value, ov.value) {
                (Value::Map(mut bm), Value::Map(om)) => {
                    for (uk, uv) in om {
                        bm.insert(uk, strip_tags(uv));
                    }
                    Node::new(Value::Map(bm), bv.mark)
                }
                (_, v) => strip_tags(Node::new(v, ov.mark)),
            },
            "ports" | "volumes" | "devices" | "secrets" | "configs" | "expose" | "cap_add"
            | "cap_drop" | "profiles" | "links" | "external_links" | "security_opt"
            | "volumes_from" | "group_add" => merge_unique(seq_of(bv), seq_of(ov), &k),
            "dns" | "dns_search" | "dns_opt" | "env_file" | "tmpfs" | "label_file" => {
                deep_merge(seq_of(bv), seq_of(ov))
            }
            _ => deep_merge(bv, ov),
        };
        b.insert(k, merged);
    }
    Ok(Node::new(Value::Map(b), mark))
}

fn merge_build(base: Node, over: Node) -> Node {
    let (Value::Map(mut b), Value::Map(o)) = (base.value.clone(), over.value.clone()) else {
        return deep_merge(base, over);
    };
    for (k, ov) in o {
        if ov.tag == Some(MergeTag::Reset) {
            b.shift_remove(&k);
            continue;
        }
        let merged = match (k.as_str(), b.shift_remove(&k)) {
            (_, None) => strip_tags(ov),
            ("args" | "labels" | "additional_contexts", Some(bv)) => {
                deep_merge(to_mapping(bv, '='), to_mapping(ov, '='))
            }
            ("cache_from" | "cache_to" | "tags" | "platforms", Some(bv)) => {
                merge_unique(seq_of(bv), seq_of(ov), &k)
            }
            (_, Some(bv)) => deep_merge(bv, ov),
        };
        b.insert(k, merged);
    }
    Node::new(Value::Map(b), base.mark)
}

fn merge_extra_hosts(base: Node, over: Node) -> Node {
    let as_map = |n: Node| -> Node {
        match n.value {
            Value::Seq(_) => {
                // `host:ip` or `host=ip`.
                let texts: Vec<Node> = n
                    .as_seq()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|i| {
                        let t = i.scalar_text().unwrap_or_default();
                        let t = if t.contains('=') {
                            t
                        } else {
                            t.replacen(':', "=", 1)
                        };
                        Node::new(Value::String(t), i.mark)
                    })
                    .collect();
                to_mapping(Node::new(Value::Seq(texts), n.mark), '=')
            }
            _ => n,
        }
    };
    deep_merge(as_map(base), as_map(over))
}

#[cfg(test)]
mod tests {
    use super::super::yaml::parse;
    use super::*;

    fn m(a: &str, b: &str) -> serde_json::Value {
        let a = parse(a, "a.yaml").unwrap();
        let b = parse(b, "b.yaml").unwrap();
        merge_files(strip_tags(a), b).unwrap().to_json()
    }

    #[test]
    fn scalars_replace_and_mappings_merge() {
        let r = m(
            "services:\n  web:\n    image: a\n    environment: [A=1, B=2]\n    command: x y\n",
            "services:\n  web:\n    image: b\n    environment:\n      B: 3\n    command: [z]\n",
        );
        let web = &r["services"]["web"];
        assert_eq!(web["image"], "b");
        assert_eq!(web["environment"]["A"], "1");
        assert_eq!(web["environment"]["B"], 3);
        assert_eq!(web["command"], serde_json::json!(["z"]));
    }

    #[test]
    fn lists_unique_by_key() {
        let r = m(
            "services:\n  web:\n    volumes: ['./a:/data', 'x:/other']\n    ports: ['80:80']\n",
            "services:\n  web:\n    volumes: ['./b:/data']\n    ports: ['80:80', '81:81']\n",
        );
        let web = &r["services"]["web"];
        assert_eq!(web["volumes"], serde_json::json!(["./b:/data", "x:/other"]));
        assert_eq!(web["ports"], serde_json::json!(["80:80", "81:81"]));
    }

    #[test]
    fn reset_and_override_tags() {
        let r = m(
            "services:\n  web:\n    ports: ['80:80']\n    environment: {A: 1}\n    labels: {a: b}\n",
            "services:\n  web:\n    ports: !reset []\n    environment: !override {B: 2}\n",
        );
        let web = &r["services"]["web"];
        assert!(web.get("ports").is_none());
        assert_eq!(web["environment"], serde_json::json!({"B": 2}));
        assert_eq!(web["labels"], serde_json::json!({"a": "b"}));
    }
}
