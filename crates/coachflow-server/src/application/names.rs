//! Resource names (`tenants/{tenant}/engagements/{engagement}/tasks/{task}`), parsed once at
//! the edge so handlers and the core never re-check them.

use std::fmt;

use super::error::AppError;

/// `[a-z0-9][a-z0-9-]{0,62}`: tenant and engagement ids.
pub fn is_valid_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || *byte == b'-')
}

/// Model keys, as the model language defines them (snake_case or kebab-case).
fn is_valid_model_key(key: &str) -> bool {
    coachflow_model::is_valid_key(key)
}

/// A task instance id: printable, no `/`, at most 200 bytes.
fn is_valid_task_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 200 && id.chars().all(|c| !c.is_control() && c != '/' && !c.is_whitespace())
}

const ID_RULE: &str = "1 to 63 characters: lower-case letters, digits and '-', starting with a letter or digit";

fn segments<'a>(field: &str, name: &'a str, shape: &str) -> Result<Vec<&'a str>, AppError> {
    if name.is_empty() {
        return Err(AppError::invalid(
            field,
            format!("is required: a resource name of the form '{shape}'"),
        ));
    }
    Ok(name.split('/').collect())
}

fn tenant_id(field: &str, id: &str, shape: &str) -> Result<String, AppError> {
    if is_valid_id(id) {
        Ok(id.to_owned())
    } else {
        Err(AppError::invalid(
            field,
            format!("'{id}' is not a valid tenant id ({ID_RULE}); expected '{shape}'"),
        ))
    }
}

/// `tenants/{tenant}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantName {
    pub tenant: String,
}

impl TenantName {
    const SHAPE: &str = "tenants/{tenant}";

    pub fn parse(field: &str, name: &str) -> Result<TenantName, AppError> {
        match segments(field, name, Self::SHAPE)?.as_slice() {
            ["tenants", tenant] => Ok(TenantName {
                tenant: tenant_id(field, tenant, Self::SHAPE)?,
            }),
            _ => Err(AppError::invalid(
                field,
                format!("'{name}' is not of the form '{}'", Self::SHAPE),
            )),
        }
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "tenants/{}", self.tenant)
    }
}

/// `tenants/{tenant}/models/{model}`, optionally `@{version}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelName {
    pub tenant: String,
    pub key: String,
    pub version: Option<u32>,
}

impl ModelName {
    const SHAPE: &str = "tenants/{tenant}/models/{model}";

    pub fn new(tenant: &str, key: &str) -> ModelName {
        ModelName {
            tenant: tenant.to_owned(),
            key: key.to_owned(),
            version: None,
        }
    }

    /// Parses a name, with `@{version}` allowed when `versioned`.
    pub fn parse(field: &str, name: &str, versioned: bool) -> Result<ModelName, AppError> {
        let shape = if versioned {
            "tenants/{tenant}/models/{model}[@{version}]"
        } else {
            Self::SHAPE
        };
        match segments(field, name, shape)?.as_slice() {
            ["tenants", tenant, "models", model] => {
                let tenant = tenant_id(field, tenant, shape)?;
                let (key, version) = match model.split_once('@') {
                    Some((key, version)) if versioned => {
                        let version = version
                            .parse::<u32>()
                            .ok()
                            .filter(|version| *version > 0)
                            .ok_or_else(|| {
                                AppError::invalid(
                                    field,
                                    format!("'{version}' is not a model version (a number from 1)"),
                                )
                            })?;
                        (key, Some(version))
                    }
                    _ => (*model, None),
                };
                Ok(ModelName {
                    tenant,
                    key: Self::key(field, key)?,
                    version,
                })
            }
            _ => Err(AppError::invalid(
                field,
                format!("'{name}' is not of the form '{shape}'"),
            )),
        }
    }

    /// A model reference within `tenant`: a full name or the bare key.
    pub fn parse_reference(field: &str, reference: &str, tenant: &str) -> Result<ModelName, AppError> {
        if reference.contains('/') {
            let name = ModelName::parse(field, reference, false)?;
            if name.tenant != tenant {
                return Err(AppError::invalid(
                    field,
                    format!("model '{reference}' belongs to another tenant than 'tenants/{tenant}'"),
                ));
            }
            Ok(name)
        } else if reference.is_empty() {
            Err(AppError::invalid(
                field,
                "is required: a model key or 'tenants/{tenant}/models/{model}'".to_owned(),
            ))
        } else {
            Ok(ModelName::new(tenant, &Self::key(field, reference)?))
        }
    }

    fn key(field: &str, key: &str) -> Result<String, AppError> {
        if is_valid_model_key(key) {
            Ok(key.to_owned())
        } else {
            Err(AppError::invalid(
                field,
                format!(
                    "'{key}' is not a valid model key (1 to 63 characters: lower-case letters, digits, '_' and '-', starting with a letter)"
                ),
            ))
        }
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "tenants/{}/models/{}", self.tenant, self.key)?;
        if let Some(version) = self.version {
            write!(formatter, "@{version}")?;
        }
        Ok(())
    }
}

/// `tenants/{tenant}/engagements/{engagement}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EngagementName {
    pub tenant: String,
    pub id: String,
}

impl EngagementName {
    const SHAPE: &str = "tenants/{tenant}/engagements/{engagement}";

    pub fn new(tenant: &str, id: &str) -> EngagementName {
        EngagementName {
            tenant: tenant.to_owned(),
            id: id.to_owned(),
        }
    }

    pub fn parse(field: &str, name: &str) -> Result<EngagementName, AppError> {
        match segments(field, name, Self::SHAPE)?.as_slice() {
            ["tenants", tenant, "engagements", id] => {
                let name = EngagementName {
                    tenant: tenant_id(field, tenant, Self::SHAPE)?,
                    id: Self::id(field, id)?,
                };
                crate::trace::record_engagement(&name);
                Ok(name)
            }
            _ => Err(AppError::invalid(
                field,
                format!("'{name}' is not of the form '{}'", Self::SHAPE),
            )),
        }
    }

    /// Checks a caller-chosen engagement id.
    pub fn id(field: &str, id: &str) -> Result<String, AppError> {
        if is_valid_id(id) {
            Ok(id.to_owned())
        } else {
            Err(AppError::invalid(
                field,
                format!("'{id}' is not a valid engagement id ({ID_RULE})"),
            ))
        }
    }
}

impl fmt::Display for EngagementName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "tenants/{}/engagements/{}", self.tenant, self.id)
    }
}

/// `tenants/{tenant}/engagements/{engagement}/tasks/{task}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskName {
    pub engagement: EngagementName,
    pub task: String,
}

impl TaskName {
    const SHAPE: &str = "tenants/{tenant}/engagements/{engagement}/tasks/{task}";

    pub fn parse(field: &str, name: &str) -> Result<TaskName, AppError> {
        match segments(field, name, Self::SHAPE)?.as_slice() {
            ["tenants", tenant, "engagements", id, "tasks", task] => {
                if !is_valid_task_id(task) {
                    return Err(AppError::invalid(field, format!("'{task}' is not a valid task id")));
                }
                let engagement = EngagementName {
                    tenant: tenant_id(field, tenant, Self::SHAPE)?,
                    id: EngagementName::id(field, id)?,
                };
                crate::trace::record_engagement(&engagement);
                Ok(TaskName {
                    engagement,
                    task: (*task).to_owned(),
                })
            }
            _ => Err(AppError::invalid(
                field,
                format!("'{name}' is not of the form '{}'", Self::SHAPE),
            )),
        }
    }

    pub fn format(engagement: &EngagementName, task: &str) -> String {
        format!("{engagement}/tasks/{task}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_kind_of_name() {
        assert_eq!(TenantName::parse("parent", "tenants/acme").unwrap().tenant, "acme");
        let model = ModelName::parse("name", "tenants/acme/models/four-stage@3", true).unwrap();
        assert_eq!((model.key.as_str(), model.version), ("four-stage", Some(3)));
        assert_eq!(model.to_string(), "tenants/acme/models/four-stage@3");
        let task = TaskName::parse("name", "tenants/acme/engagements/e-1/tasks/interview~p-2").unwrap();
        assert_eq!(task.engagement.id, "e-1");
        assert_eq!(task.task, "interview~p-2");
    }

    #[test]
    fn refuses_malformed_names_naming_the_field() {
        let error = EngagementName::parse("name", "tenants/acme/engagement/e-1").unwrap_err();
        assert_eq!(
            error.to_string(),
            "name: 'tenants/acme/engagement/e-1' is not of the form 'tenants/{tenant}/engagements/{engagement}'"
        );
        let error = TenantName::parse("parent", "tenants/Acme").unwrap_err();
        assert!(
            error.to_string().starts_with("parent: 'Acme' is not a valid tenant id"),
            "{error}"
        );
        let error = ModelName::parse("name", "tenants/acme/models/x@0", true).unwrap_err();
        assert!(error.to_string().contains("not a model version"), "{error}");
        assert!(ModelName::parse("name", "tenants/acme/models/x@2", false).is_err());
        assert!(
            TenantName::parse("parent", "")
                .unwrap_err()
                .to_string()
                .contains("is required")
        );
    }

    #[test]
    fn model_references_may_be_bare_keys_of_the_tenant() {
        assert_eq!(
            ModelName::parse_reference("model", "four-stage", "acme").unwrap().key,
            "four-stage"
        );
        assert!(ModelName::parse_reference("model", "tenants/other/models/four-stage", "acme").is_err());
    }
}

/// `tenants/{tenant}/operations/{operation}`: a long-running operation (AIP-151).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperationName {
    pub tenant: String,
    pub id: String,
}

impl OperationName {
    const SHAPE: &str = "tenants/{tenant}/operations/{operation}";

    pub fn new(tenant: &str, id: &str) -> OperationName {
        OperationName {
            tenant: tenant.to_owned(),
            id: id.to_owned(),
        }
    }

    pub fn parse(field: &str, name: &str) -> Result<OperationName, AppError> {
        match segments(field, name, Self::SHAPE)?.as_slice() {
            ["tenants", tenant, "operations", id] if is_valid_id(id) => Ok(OperationName {
                tenant: tenant_id(field, tenant, Self::SHAPE)?,
                id: (*id).to_owned(),
            }),
            _ => Err(AppError::invalid(
                field,
                format!("'{name}' is not of the form '{}'", Self::SHAPE),
            )),
        }
    }
}

impl fmt::Display for OperationName {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "tenants/{}/operations/{}", self.tenant, self.id)
    }
}
