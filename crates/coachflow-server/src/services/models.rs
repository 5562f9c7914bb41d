//! `coachflow.v1.ModelService`.

use std::sync::Arc;

use coachflow_model::{Model, Problems};
use tonic::{Request, Response, Status};

use super::{decode_page_token, encode_page_token, observe, page_size, split_page};
use crate::convert;
use crate::core::{Core, RequestKey};
use crate::error::{ApiError, Violation};
use crate::names::{ModelName, TenantName};
use crate::proto::{self, model_service_server::ModelService};

#[derive(Debug, Clone)]
pub struct ModelApi {
    core: Arc<Core>,
}

impl ModelApi {
    pub fn new(core: Arc<Core>) -> ModelApi {
        ModelApi { core }
    }
}

/// The format of a model's text: as given, or detected.
fn format(source: &str, format: i32) -> Result<&'static str, ApiError> {
    let looks_like_json = source.trim_start().starts_with('{');
    match proto::ModelFormat::try_from(format) {
        Ok(proto::ModelFormat::Unspecified) => Ok(if looks_like_json { "json" } else { "yaml" }),
        Ok(proto::ModelFormat::Yaml) => Ok("yaml"),
        Ok(proto::ModelFormat::Json) if looks_like_json => Ok("json"),
        Ok(proto::ModelFormat::Json) => Err(ApiError::invalid("source", "is not JSON (it does not start with '{')")),
        Err(_) => Err(ApiError::invalid("format", format!("{format} is not a ModelFormat"))),
    }
}

/// One BadRequest violation per problem, at `source.<path in the document>`.
fn invalid_model(problems: &Problems) -> ApiError {
    ApiError::InvalidArgument(
        problems
            .0
            .iter()
            .map(|problem| Violation {
                field: if problem.path.is_empty() {
                    "source".to_owned()
                } else {
                    format!("source.{}", problem.path)
                },
                description: problem.message.clone(),
            })
            .collect(),
    )
}

fn require_source(source: &str) -> Result<(), ApiError> {
    if source.trim().is_empty() {
        return Err(ApiError::invalid(
            "source",
            "is required: the model's YAML or JSON text",
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl ModelService for ModelApi {
    async fn create_model(
        &self,
        request: Request<proto::CreateModelRequest>,
    ) -> Result<Response<proto::Model>, Status> {
        observe("CreateModel", async {
            let request = request.into_inner();
            let tenant = TenantName::parse("parent", &request.parent)?;
            require_source(&request.source)?;
            let format = format(&request.source, request.format)?;
            let model = Model::from_text(&request.source).map_err(|problems| invalid_model(&problems))?;
            let key = RequestKey::of(&tenant.tenant, "CreateModel", &request.request_id, &request);
            self.core
                .publish_model(&tenant.tenant, &request.source, format, &model, key)
                .await
        })
        .await
    }

    async fn validate_model(
        &self,
        request: Request<proto::ValidateModelRequest>,
    ) -> Result<Response<proto::ValidateModelResponse>, Status> {
        observe("ValidateModel", async {
            let request = request.into_inner();
            TenantName::parse("parent", &request.parent)?;
            require_source(&request.source)?;
            format(&request.source, request.format)?;
            Ok(match Model::from_text(&request.source) {
                Ok(model) => proto::ValidateModelResponse {
                    valid: true,
                    problems: Vec::new(),
                    key: model.key().to_owned(),
                    phase_count: u32::try_from(model.phases().len()).unwrap_or(u32::MAX),
                    task_count: u32::try_from(model.tasks().len()).unwrap_or(u32::MAX),
                },
                Err(problems) => proto::ValidateModelResponse {
                    valid: false,
                    problems: problems
                        .0
                        .iter()
                        .map(|problem| proto::ModelProblem {
                            path: problem.path.clone(),
                            message: problem.message.clone(),
                        })
                        .collect(),
                    ..proto::ValidateModelResponse::default()
                },
            })
        })
        .await
    }

    async fn get_model(&self, request: Request<proto::GetModelRequest>) -> Result<Response<proto::Model>, Status> {
        observe("GetModel", async {
            let name = ModelName::parse("name", &request.get_ref().name, true)?;
            let (stored, model) = self.core.stored_model(&name.tenant, &name.key, name.version).await?;
            Ok(convert::model(&stored, &model, true))
        })
        .await
    }

    async fn list_models(
        &self,
        request: Request<proto::ListModelsRequest>,
    ) -> Result<Response<proto::ListModelsResponse>, Status> {
        observe("ListModels", async {
            let request = request.into_inner();
            let tenant = TenantName::parse("parent", &request.parent)?;
            let limit = page_size(request.page_size)?;
            let after: Option<String> = decode_page_token("models", &tenant.tenant, &request.page_token)?;
            let stored = self
                .core
                .store()
                .list_models(&tenant.tenant, after.as_deref(), limit + 1)
                .await?;
            let (stored, more) = split_page(stored, limit);
            let next_page_token = match stored.last() {
                Some(last) if more => encode_page_token("models", &tenant.tenant, &last.key),
                _ => String::new(),
            };
            let mut models = Vec::with_capacity(stored.len());
            for stored in stored {
                let (stored, model) = self.core.compile(stored)?;
                models.push(convert::model(&stored, &model, false));
            }
            Ok(proto::ListModelsResponse {
                models,
                next_page_token,
            })
        })
        .await
    }

    async fn list_model_versions(
        &self,
        request: Request<proto::ListModelVersionsRequest>,
    ) -> Result<Response<proto::ListModelVersionsResponse>, Status> {
        observe("ListModelVersions", async {
            let request = request.into_inner();
            let name = ModelName::parse("name", &request.name, false)?;
            let limit = page_size(request.page_size)?;
            let filter = name.to_string();
            let before: Option<u32> = decode_page_token("model-versions", &filter, &request.page_token)?;
            let stored = self
                .core
                .store()
                .list_model_versions(&name.tenant, &name.key, before, limit + 1)
                .await?;
            if stored.is_empty() && before.is_none() {
                return Err(ApiError::NotFound {
                    resource: "model",
                    name: filter,
                });
            }
            let (stored, more) = split_page(stored, limit);
            let next_page_token = match stored.last() {
                Some(last) if more => encode_page_token("model-versions", &filter, &last.version),
                _ => String::new(),
            };
            let mut models = Vec::with_capacity(stored.len());
            for stored in stored {
                let (stored, model) = self.core.compile(stored)?;
                models.push(convert::model(&stored, &model, false));
            }
            Ok(proto::ListModelVersionsResponse {
                models,
                next_page_token,
            })
        })
        .await
    }

    async fn render_model(
        &self,
        request: Request<proto::RenderModelRequest>,
    ) -> Result<Response<proto::RenderModelResponse>, Status> {
        observe("RenderModel", async {
            let name = ModelName::parse("name", &request.get_ref().name, true)?;
            let (_, model) = self.core.stored_model(&name.tenant, &name.key, name.version).await?;
            Ok(proto::RenderModelResponse {
                mermaid: coachflow_model::render_mermaid(model.document()),
            })
        })
        .await
    }
}
