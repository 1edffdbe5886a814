//! `docker rename` and `docker update`.
//!
//! Rename changes the name (and the DNS name the container's networks answer for it), never its
//! labels: a compose container renamed by hand still belongs to its service. Update merges the
//! given resource limits and restart policy into the stored `HostConfig` and, for a running
//! container, writes the limits into its cgroups at once.

use serde::{Deserialize, Serialize};

use super::create::valid_name;
use super::resources;
use super::state::Status;
use super::{ContainerError, ContainerStore, Result};
use crate::engine::runtime::cgroup;
use crate::engine::runtime::syscall::LinuxSyscall;
use crate::engine::wire::{HostConfig, Resources, RestartPolicy};
use crate::engine::Engine;

/// The body of `POST /containers/{id}/update` (Docker's `UpdateConfig`: the fields berth
/// applies). The Docker CLI sends every field, zero for "unchanged", as Docker reads them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateRequest {
    #[serde(flatten)]
    pub resources: Resources,
    #[serde(default)]
    pub restart_policy: Option<RestartPolicy>,
}

/// Docker's answer to an update.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct UpdateResponse {
    pub warnings: Vec<String>,
}

/// `host` with the update's non-zero fields applied, as Docker's `updateContainerResources`
/// merges them. A memory change without a swap figure keeps Docker's default (twice the memory)
/// when the old swap was the default; a swap the user set stays and must still cover the memory.
pub fn merge_update(host: &HostConfig, update: &UpdateRequest) -> Result<HostConfig> {
    let mut next = host.clone();
    next.resources = merge_resources(&host.resources, &update.resources)?;
    if let Some(policy) = update
        .restart_policy
        .as_ref()
        .filter(|p| !p.name.is_empty())
    {
        if policy.name != "on-failure" && policy.maximum_retry_count != 0 {
            return Err(ContainerError::BadRequest(format!(
                "invalid restart policy: maximum retry count can only be used with 'on-failure' (got {:?})",
                policy.name
            )));
        }
        if host.auto_remove && policy.name != "no" {
            return Err(ContainerError::BadRequest(
                "Restart policy cannot be updated because AutoRemove is enabled for the container"
                    .into(),
            ));
        }
        next.restart_policy = Some(policy.clone());
    }
    Ok(next)
}

/// The limits `now` with `update`'s non-zero fields applied (see [`merge_update`]).
fn merge_resources(now: &Resources, update: &Resources) -> Result<Resources> {
    let mut next = now.clone();
    if update.memory != 0 {
        let default_swap = now.memory > 0 && now.memory_swap == now.memory * 2;
        if update.memory_swap == 0 {
            if default_swap {
                next.memory_swap = 0;
            } else if now.memory_swap > 0 && update.memory > now.memory_swap {
                return Err(ContainerError::BadRequest(
                    "Memory limit should be smaller than already set memoryswap limit, update the memoryswap at the same time".into(),
                ));
            }
        }
        next.memory = update.memory;
    }
    let set = |field: &mut i64, value: i64| {
        if value != 0 {
            *field = value;
        }
    };
    set(&mut next.memory_swap, update.memory_swap);
    set(&mut next.memory_reservation, update.memory_reservation);
    set(&mut next.cpu_shares, update.cpu_shares);
    set(&mut next.cpu_period, update.cpu_period);
    set(&mut next.cpu_quota, update.cpu_quota);
    if update.nano_cpus != 0 {
        // A CPU count replaces a quota and period (they may not be combined).
        next.nano_cpus = update.nano_cpus;
        next.cpu_quota = 0;
        next.cpu_period = 0;
    } else if update.cpu_quota != 0 || update.cpu_period != 0 {
        next.nano_cpus = 0;
    }
    if !update.cpuset_cpus.is_empty() {
        next.cpuset_cpus = update.cpuset_cpus.clone();
    }
    if let Some(pids) = update.pids_limit {
        next.pids_limit = Some(pids);
    }
    Ok(next)
}

impl ContainerStore {
    pub async fn rename(&self, id: &str, new_name: &str) -> Result<String> {
        let new_name = new_name.strip_prefix('/').unwrap_or(new_name);
        if new_name.is_empty() {
            return Err(ContainerError::BadRequest(
                "Neither old nor new names may be empty".into(),
            ));
        }
        if !valid_name(new_name) {
            return Err(ContainerError::BadRequest(format!(
                "Invalid container name ({new_name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
        // Under the create lock: a create cannot take the name between the check and the save.
        let _names = self.inner.create_lock.lock().await;
        let _guard = self.lock(id).await;
        let mut record = self.load_record(id)?;
        if record.name == new_name {
            return Err(ContainerError::BadRequest(
                "Renaming a container with the same name as its current name".into(),
            ));
        }
        if let Some(owner) = self.id_by_name(new_name) {
            return Err(ContainerError::Conflict(format!(
                "Conflict. The container name \"/{new_name}\" is already in use by container \"{owner}\". You have to remove (or rename) that container to be able to reuse that name."
            )));
        }
        let old = std::mem::replace(&mut record.name, new_name.to_string());
        self.save_record(&record)?;
        Ok(old)
    }

    pub async fn update(&self, id: &str, update: &UpdateRequest) -> Result<()> {
        let _guard = self.lock(id).await;
        let mut record = self.load_record(id)?;
        let host = record.request.host_config.clone().unwrap_or_default();
        let mut next = merge_update(&host, update)?;
        let cpus = resources::HostCpus::detect(self.inner.cgroups.cpuset_root().as_deref());
        resources::validate(&next, &cpus).map_err(|e| ContainerError::BadRequest(e.to_string()))?;
        resources::adapt(&mut next);
        if self.state(id).status == Status::Running {
            self.apply_live(id, &next).await?;
        }
        record.request.host_config = Some(next);
        self.save_record(&record)
    }

    /// Write `host`'s limits into running container `id`'s cgroups.
    async fn apply_live(&self, id: &str, host: &HostConfig) -> Result<()> {
        let limits = resources::limits_from_host_config(host);
        let (dirs, res) = self
            .inner
            .cgroups
            .plan(id, &limits)
            .map_err(|e| ContainerError::BadRequest(e.to_string()))?;
        let pids = cgroup::pids(&self.cgroup_paths(id));
        tokio::task::spawn_blocking(move || cgroup::update_live(&LinuxSyscall, &dirs, &res, &pids))
            .await
            .map_err(|e| ContainerError::Other(format!("update task failed: {e}")))?
            .map_err(|e| ContainerError::Other(format!("cannot update container {id}: {e}")))
    }
}

impl Engine {
    pub async fn rename_container(&self, id_or_name: &str, new_name: &str) -> Result<()> {
        let id = self.containers.resolve_id(id_or_name)?;
        let old = self.containers.rename(&id, new_name).await?;
        let record = self.containers.load_record(&id)?;
        self.networks.rename_container(&id, &old, &record.name);
        self.container_event("rename", &record, &[("oldName", format!("/{old}"))]);
        Ok(())
    }

    pub async fn update_container(
        &self,
        id_or_name: &str,
        update: &UpdateRequest,
    ) -> Result<UpdateResponse> {
        let id = self.containers.resolve_id(id_or_name)?;
        self.containers.update(&id, update).await?;
        let record = self.containers.load_record(&id)?;
        self.container_event("update", &record, &[]);
        Ok(UpdateResponse::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(memory: i64, swap: i64) -> HostConfig {
        HostConfig {
            resources: Resources {
                memory,
                memory_swap: swap,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn zero_fields_leave_the_limits_as_they_were() {
        let before = HostConfig {
            resources: Resources {
                cpu_shares: 512,
                pids_limit: Some(10),
                ..Default::default()
            },
            ..host(64 << 20, 128 << 20)
        };
        assert_eq!(
            merge_update(&before, &UpdateRequest::default()).unwrap(),
            before
        );
    }

    #[test]
    fn a_memory_change_keeps_dockers_default_swap_or_checks_the_users() {
        let update = UpdateRequest {
            resources: Resources {
                memory: 32 << 20,
                ..Default::default()
            },
            ..Default::default()
        };
        // The default swap (twice the memory) is dropped, so it is re-derived from the new memory.
        let next = merge_update(&host(64 << 20, 128 << 20), &update).unwrap();
        assert_eq!(
            (next.resources.memory, next.resources.memory_swap),
            (32 << 20, 0)
        );
        // A swap the user set stays when it still covers the memory, and refuses otherwise.
        let next = merge_update(&host(64 << 20, 100 << 20), &update).unwrap();
        assert_eq!(next.resources.memory_swap, 100 << 20);
        let bigger = UpdateRequest {
            resources: Resources {
                memory: 200 << 20,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(merge_update(&host(64 << 20, 100 << 20), &bigger).is_err());
    }

    #[test]
    fn cpus_replace_a_quota_and_a_quota_replaces_cpus() {
        let quota = HostConfig {
            resources: Resources {
                cpu_quota: 50_000,
                cpu_period: 100_000,
                ..Default::default()
            },
            ..Default::default()
        };
        let next = merge_update(
            &quota,
            &UpdateRequest {
                resources: Resources {
                    nano_cpus: 1_500_000_000,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (
                next.resources.nano_cpus,
                next.resources.cpu_quota,
                next.resources.cpu_period
            ),
            (1_500_000_000, 0, 0)
        );
        let back = merge_update(
            &next,
            &UpdateRequest {
                resources: Resources {
                    cpu_quota: 20_000,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            (back.resources.nano_cpus, back.resources.cpu_quota),
            (0, 20_000)
        );
    }

    #[test]
    fn restart_policy_replaces_only_when_named_and_retries_need_on_failure() {
        let policy = |name: &str, n| UpdateRequest {
            restart_policy: Some(RestartPolicy {
                name: name.into(),
                maximum_retry_count: n,
            }),
            ..Default::default()
        };
        let next = merge_update(&HostConfig::default(), &policy("on-failure", 3)).unwrap();
        assert_eq!(next.restart_policy.unwrap().maximum_retry_count, 3);
        let unchanged = merge_update(&HostConfig::default(), &policy("", 0)).unwrap();
        assert_eq!(unchanged.restart_policy, None);
        assert!(merge_update(&HostConfig::default(), &policy("always", 2)).is_err());
        let auto_remove = HostConfig {
            auto_remove: true,
            ..Default::default()
        };
        assert!(merge_update(&auto_remove, &policy("always", 0)).is_err());
    }

    /// One `Resources` flattened into both requests: their JSON is byte for byte what it was
    /// when each spelled the fields out (the strings below were taken from that version), so
    /// Docker clients and records on disk read the same.
    #[test]
    fn the_shared_resources_keep_both_requests_json_as_it_was() {
        let host = HostConfig {
            network_mode: "bridge".into(),
            auto_remove: true,
            shm_size: Some(64 << 20),
            resources: Resources {
                memory: 256 << 20,
                memory_swap: -1,
                memory_reservation: 128 << 20,
                nano_cpus: 1_500_000_000,
                cpu_shares: 512,
                cpu_quota: 50_000,
                cpu_period: 100_000,
                cpuset_cpus: "0-1".into(),
                pids_limit: Some(100),
            },
            cap_add: Some(vec!["NET_ADMIN".into()]),
            ..Default::default()
        };
        let update = UpdateRequest {
            resources: Resources {
                memory: 64 << 20,
                memory_swap: 128 << 20,
                memory_reservation: 32 << 20,
                nano_cpus: 500_000_000,
                cpu_shares: 256,
                cpu_quota: 20_000,
                cpu_period: 50_000,
                cpuset_cpus: "0".into(),
                pids_limit: Some(50),
            },
            restart_policy: Some(RestartPolicy {
                name: "on-failure".into(),
                maximum_retry_count: 3,
            }),
        };
        let host_json = r#"{"NetworkMode":"bridge","AutoRemove":true,"Privileged":false,"ReadonlyRootfs":false,"ShmSize":67108864,"Memory":268435456,"MemorySwap":-1,"MemoryReservation":134217728,"NanoCpus":1500000000,"CpuShares":512,"CpuQuota":50000,"CpuPeriod":100000,"CpusetCpus":"0-1","PidsLimit":100,"CapAdd":["NET_ADMIN"]}"#;
        let update_json = r#"{"Memory":67108864,"MemorySwap":134217728,"MemoryReservation":33554432,"NanoCpus":500000000,"CpuShares":256,"CpuQuota":20000,"CpuPeriod":50000,"CpusetCpus":"0","PidsLimit":50,"RestartPolicy":{"Name":"on-failure","MaximumRetryCount":3}}"#;
        assert_eq!(serde_json::to_string(&host).unwrap(), host_json);
        assert_eq!(serde_json::to_string(&update).unwrap(), update_json);
        assert_eq!(serde_json::from_str::<HostConfig>(host_json).unwrap(), host);
        assert_eq!(
            serde_json::from_str::<UpdateRequest>(update_json).unwrap(),
            update
        );
        assert_eq!(
            serde_json::to_string(&HostConfig::default()).unwrap(),
            r#"{"AutoRemove":false,"Privileged":false,"ReadonlyRootfs":false,"Memory":0,"MemorySwap":0,"MemoryReservation":0,"NanoCpus":0,"CpuShares":0,"CpuQuota":0,"CpuPeriod":0,"CpusetCpus":"","PidsLimit":null}"#
        );
        assert_eq!(
            serde_json::to_string(&UpdateRequest::default()).unwrap(),
            r#"{"Memory":0,"MemorySwap":0,"MemoryReservation":0,"NanoCpus":0,"CpuShares":0,"CpuQuota":0,"CpuPeriod":0,"CpusetCpus":"","PidsLimit":null,"RestartPolicy":null}"#
        );
        // What the Docker CLI sends for `docker update --memory 64m`: zeros for the rest.
        let cli: UpdateRequest = serde_json::from_str(
            r#"{"BlkioWeight":0,"CpuShares":0,"Memory":67108864,"MemorySwap":0,"PidsLimit":null,"RestartPolicy":{"Name":"","MaximumRetryCount":0}}"#,
        )
        .unwrap();
        assert_eq!(cli.resources.memory, 64 << 20);
        assert_eq!(cli.resources.pids_limit, None);
    }
}
