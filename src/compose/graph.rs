//! The service dependency graph (petgraph): start order, reverse stop order, dependency levels,
//! cycle errors. Built from a project, or from the `depends_on` labels of existing containers
//! when the commands that act on them have no compose file.

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;

use super::model::Project;

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("dependency cycle detected: {0}; remove one of these depends_on entries")]
    Cycle(String),
}

pub struct ServiceGraph {
    graph: DiGraph<String, ()>,
    /// Topological order: dependencies before dependents.
    order: Vec<NodeIndex>,
}

impl ServiceGraph {
    /// Edges go from a service to what it depends on (explicit and implicit `depends_on`);
    /// dependencies on services not in the project (disabled, optional) are ignored.
    pub fn new(project: &Project) -> Result<Self, GraphError> {
        let dependencies = project
            .services
            .iter()
            .map(|(name, svc)| (name.clone(), svc.depends_on.keys().cloned().collect()));
        Self::build(dependencies, CycleHandling::Refuse)
    }

    /// The graph of `(service, its dependencies)` pairs as the containers' labels record them.
    /// Labels of containers made from different versions of a compose file can disagree (a
    /// `depends_on` change does not recreate), so a cycle among them is cut, not refused:
    /// the commands acting on existing containers must still reach every one of them.
    pub fn from_dependencies(
        dependencies: impl IntoIterator<Item = (String, Vec<String>)>,
    ) -> Self {
        match Self::build(dependencies, CycleHandling::Cut) {
            Ok(graph) => graph,
            Err(GraphError::Cycle(_)) => unreachable!("cut cycles are never reported"),
        }
    }

    fn build(
        dependencies: impl IntoIterator<Item = (String, Vec<String>)>,
        cycles: CycleHandling,
    ) -> Result<Self, GraphError> {
        let dependencies: Vec<(String, Vec<String>)> = dependencies.into_iter().collect();
        let mut graph = DiGraph::new();
        let mut index = indexmap::IndexMap::new();
        for (name, _) in &dependencies {
            if !index.contains_key(name) {
                index.insert(name.clone(), graph.add_node(name.clone()));
            }
        }
        for (name, deps) in &dependencies {
            for dep in deps {
                if let Some(&to) = index.get(dep) {
                    if graph.find_edge(index[name], to).is_none() {
                        graph.add_edge(index[name], to, ());
                    }
                }
            }
        }
        let order = topo_order(&graph, cycles)?;
        Ok(ServiceGraph { graph, order })
    }

    /// Services grouped into levels, dependencies first: a service's level is one more than its
    /// deepest dependency's, so the services of one level can start (or, reversed, stop)
    /// together, as docker compose walks its graph in parallel. An edge cut from a cycle does
    /// not count.
    pub fn levels(&self) -> Vec<Vec<String>> {
        let mut level_of: Vec<Option<usize>> = vec![None; self.graph.node_count()];
        let mut levels: Vec<Vec<String>> = Vec::new();
        for &node in &self.order {
            let level = self
                .graph
                .edges(node)
                .filter_map(|e| level_of[e.target().index()])
                .map(|l| l + 1)
                .max()
                .unwrap_or(0);
            level_of[node.index()] = Some(level);
            if levels.len() <= level {
                levels.resize(level + 1, Vec::new());
            }
            levels[level].push(self.graph[node].clone());
        }
        levels
    }

    /// [`Self::levels`] reversed: dependents first, as services are stopped and removed.
    pub fn stop_levels(&self) -> Vec<Vec<String>> {
        let mut levels = self.levels();
        levels.reverse();
        levels
    }

    /// Dependencies before dependents.
    pub fn start_order(&self) -> Vec<String> {
        self.order.iter().map(|i| self.graph[*i].clone()).collect()
    }

    /// Dependents before dependencies.
    pub fn stop_order(&self) -> Vec<String> {
        self.order
            .iter()
            .rev()
            .map(|i| self.graph[*i].clone())
            .collect()
    }

    /// Direct dependencies of `service`.
    pub fn dependencies(&self, service: &str) -> Vec<String> {
        self.graph
            .node_indices()
            .find(|i| self.graph[*i] == service)
            .map(|i| {
                let mut d: Vec<NodeIndex> = self.graph.edges(i).map(|e| e.target()).collect();
                d.sort_by_key(|i| i.index());
                d.into_iter().map(|t| self.graph[t].clone()).collect()
            })
            .unwrap_or_default()
    }
}

/// What [`topo_order`] does on meeting a cycle.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CycleHandling {
    /// Report it as `a -> b -> c -> a` (a compose file with a cycle is invalid).
    Refuse,
    /// Ignore the edge that closes it.
    Cut,
}

/// Depth-first post-order (stable: services in file order) with cycle detection that reports
/// the cycle as `a -> b -> c -> a`.
fn topo_order(
    graph: &DiGraph<String, ()>,
    cycles: CycleHandling,
) -> Result<Vec<NodeIndex>, GraphError> {
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        New,
        Active,
        Done,
    }
    let mut state = vec![State::New; graph.node_count()];
    let mut order = Vec::with_capacity(graph.node_count());
    for start in graph.node_indices() {
        if state[start.index()] != State::New {
            continue;
        }
        // Iterative DFS: (node, its dependencies in declaration order, next one to visit).
        let mut stack: Vec<(NodeIndex, Vec<NodeIndex>, usize)> = Vec::new();
        let deps = |n: NodeIndex| -> Vec<NodeIndex> {
            let mut d: Vec<NodeIndex> = graph.edges(n).map(|e| e.target()).collect();
            // Visit dependencies in declaration order, so the start order is stable and readable.
            d.sort_by_key(|i| i.index());
            d
        };
        state[start.index()] = State::Active;
        stack.push((start, deps(start), 0));
        while let Some((node, children, next)) = stack.last_mut() {
            if *next < children.len() {
                let child = children[*next];
                *next += 1;
                match state[child.index()] {
                    State::New => {
                        state[child.index()] = State::Active;
                        let d = deps(child);
                        stack.push((child, d, 0));
                    }
                    State::Active if cycles == CycleHandling::Cut => {}
                    State::Active => {
                        let pos = stack.iter().position(|(n, _, _)| *n == child).unwrap_or(0);
                        let mut names: Vec<String> = stack[pos..]
                            .iter()
                            .map(|(n, _, _)| graph[*n].clone())
                            .collect();
                        names.push(graph[child].clone());
                        return Err(GraphError::Cycle(names.join(" -> ")));
                    }
                    State::Done => {}
                }
            } else {
                let n = *node;
                state[n.index()] = State::Done;
                order.push(n);
                stack.pop();
            }
        }
    }
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::model::{DependsOn, Service};

    fn project(deps: &[(&str, &[&str])]) -> Project {
        let mut p = Project::default();
        for (name, ds) in deps {
            let mut s = Service::default();
            for d in *ds {
                s.depends_on.insert(
                    d.to_string(),
                    DependsOn {
                        condition: "service_started".into(),
                        required: true,
                        restart: false,
                    },
                );
            }
            p.services.insert(name.to_string(), s);
        }
        p
    }

    #[test]
    fn start_and_stop_orders() {
        let g = ServiceGraph::new(&project(&[
            ("web", &["api"]),
            ("api", &["db", "cache"]),
            ("db", &[]),
            ("cache", &[]),
        ]))
        .unwrap();
        assert_eq!(g.start_order(), vec!["db", "cache", "api", "web"]);
        assert_eq!(g.stop_order(), vec!["web", "api", "cache", "db"]);
        assert_eq!(g.dependencies("api"), vec!["db", "cache"]);
    }

    #[test]
    fn levels_group_services_whose_dependencies_are_all_in_earlier_levels() {
        let g = ServiceGraph::new(&project(&[
            ("web", &["api"]),
            ("api", &["db", "cache"]),
            ("db", &[]),
            ("cache", &[]),
            ("worker", &["db"]),
        ]))
        .unwrap();
        assert_eq!(
            g.levels(),
            [vec!["db", "cache"], vec!["api", "worker"], vec!["web"]]
        );
        assert_eq!(
            g.stop_levels(),
            [vec!["web"], vec!["api", "worker"], vec!["db", "cache"]]
        );
    }

    #[test]
    fn label_graphs_cut_cycles_and_ignore_absent_services() {
        let g = ServiceGraph::from_dependencies([
            ("a".to_string(), vec!["b".to_string()]),
            ("b".to_string(), vec!["a".to_string(), "gone".to_string()]),
            ("c".to_string(), vec![]),
        ]);
        let levels = g.levels();
        assert_eq!(levels.iter().flatten().count(), 3, "{levels:?}");
        assert_eq!(levels, [vec!["b", "c"], vec!["a"]]);
    }

    #[test]
    fn cycle_names_its_members() {
        let e = ServiceGraph::new(&project(&[
            ("service1", &["service2"]),
            ("service2", &["service3"]),
            ("service3", &["service1"]),
        ]))
        .err()
        .unwrap()
        .to_string();
        assert!(
            e.starts_with(
                "dependency cycle detected: service1 -> service2 -> service3 -> service1"
            ),
            "{e}"
        );
        let e = ServiceGraph::new(&project(&[("a", &["a"])]))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("a -> a"), "{e}");
    }
}
