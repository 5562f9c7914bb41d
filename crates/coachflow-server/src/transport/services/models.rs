//! `coachflow.v1.ModelService`.

use std::sync::Arc;

use coachflow_model::{Model, Problems};
use tonic::{Request, Response, Status};

use super::{decode_page_token, encode_page_token, observe, page_size, principal};
use crate::application::{AppError, Core, Method, ModelName, ModelSource, TenantName, Violation};
use crate::proto::{self, model_service_server::ModelService};
use crate::transport::convert;

/// The method `name` of this service, as the authorization table knows it.
macro_rules! method {
    ($name:literal) => {
        Method::named(concat!("coachflow.v1.ModelService/", $name))
    };
}

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
fn format(source: &str, format: i32) -> Result<&'static str, AppError> {
    let looks_like_json = source.trim_start().starts_with('{');
    match proto::ModelFormat::try_from(format) {
        Ok(proto::ModelFormat::Unspecified) => Ok(if looks_like_json { "json" } else { "yaml" }),
        Ok(proto::ModelFormat::Yaml) => Ok("yaml"),
        Ok(proto::ModelFormat::Json) if looks_like_json => Ok("json"),
        Ok(proto::ModelFormat::Json) => Err(AppError::invalid("source", "is not JSON (it does not start with '{')")),
        Err(_) => Err(AppError::invalid("format", format!("{format} is not a ModelFormat"))),
    }
}

/// One BadRequest violation per problem, at `source.<path in the document>`.
fn invalid_model(problems: &Problems) -> AppError {
    AppError::InvalidArgument(
        problems
            .0
            .iter()
            .map(|problem| Violation {
                field: match problem.path.as_str() {
                    "" => "source".to_owned(),
                    path if path.starts_with('[') => format!("source{path}"),
                    path => format!("source.{path}"),
                },
                description: problem.message.clone(),
            })
            .collect(),
    )
}

fn require_source(source: &str) -> Result<(), AppError> {
    if source.trim().is_empty() {
        return Err(AppError::invalid(
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
        let method = method!("CreateModel");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let tenant = TenantName::parse("parent", &request.parent)?;
            self.core.check_models(&principal, method, &tenant.tenant)?;
            require_source(&request.source)?;
            let format = format(&request.source, request.format)?;
            let model = Model::from_text(&request.source).map_err(|problems| invalid_model(&problems))?;
            let view = self
                .core
                .publish_model(
                    &principal,
                    method,
                    &tenant.tenant,
                    ModelSource {
                        text: &request.source,
                        format,
                        compiled: &model,
                    },
                    &request.request_id,
                )
                .await?;
            Ok(convert::model(&view, true))
        })
        .await
    }

    async fn validate_model(
        &self,
        request: Request<proto::ValidateModelRequest>,
    ) -> Result<Response<proto::ValidateModelResponse>, Status> {
        let method = method!("ValidateModel");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let tenant = TenantName::parse("parent", &request.parent)?;
            self.core.check_models(&principal, method, &tenant.tenant)?;
            require_source(&request.source)?;
            format(&request.source, request.format)?;
            Ok(match Model::from_text(&request.source) {
                Ok(model) => proto::ValidateModelResponse {
                    valid: true,
                    problems: Vec::new(),
                    key: model.key().to_owned(),
                    phase_count: u32::try_from(model.phases().len()).unwrap_or(u32::MAX),
                    task_count: u32::try_from(model.tasks().len()).unwrap_or(u32::MAX),
                    warnings: convert::problems(model.warnings()),
                },
                Err(problems) => proto::ValidateModelResponse {
                    valid: false,
                    problems: convert::problems(&problems.0),
                    ..proto::ValidateModelResponse::default()
                },
            })
        })
        .await
    }

    async fn get_model(&self, request: Request<proto::GetModelRequest>) -> Result<Response<proto::Model>, Status> {
        let method = method!("GetModel");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let name = ModelName::parse("name", &request.get_ref().name, true)?;
            let view = self.core.get_model(&principal, method, &name).await?;
            Ok(convert::model(&view, true))
        })
        .await
    }

    async fn list_models(
        &self,
        request: Request<proto::ListModelsRequest>,
    ) -> Result<Response<proto::ListModelsResponse>, Status> {
        let method = method!("ListModels");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let tenant = TenantName::parse("parent", &request.parent)?;
            let limit = page_size(request.page_size)?;
            let after: Option<String> = decode_page_token("models", &tenant.tenant, &request.page_token)?;
            let (views, more) = self
                .core
                .list_models(&principal, method, &tenant.tenant, after.as_deref(), limit)
                .await?;
            let next_page_token = match views.last() {
                Some(last) if more => encode_page_token("models", &tenant.tenant, &last.stored.key),
                _ => String::new(),
            };
            Ok(proto::ListModelsResponse {
                models: views.iter().map(|view| convert::model(view, false)).collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn list_model_versions(
        &self,
        request: Request<proto::ListModelVersionsRequest>,
    ) -> Result<Response<proto::ListModelVersionsResponse>, Status> {
        let method = method!("ListModelVersions");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let name = ModelName::parse("name", &request.name, false)?;
            let limit = page_size(request.page_size)?;
            let filter = name.to_string();
            let before: Option<u32> = decode_page_token("model-versions", &filter, &request.page_token)?;
            let (views, more) = self
                .core
                .list_model_versions(&principal, method, &name, before, limit)
                .await?;
            let next_page_token = match views.last() {
                Some(last) if more => encode_page_token("model-versions", &filter, &last.stored.version),
                _ => String::new(),
            };
            Ok(proto::ListModelVersionsResponse {
                models: views.iter().map(|view| convert::model(view, false)).collect(),
                next_page_token,
            })
        })
        .await
    }

    async fn render_model(
        &self,
        request: Request<proto::RenderModelRequest>,
    ) -> Result<Response<proto::RenderModelResponse>, Status> {
        let method = method!("RenderModel");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let name = ModelName::parse("name", &request.get_ref().name, true)?;
            let view = self.core.get_model(&principal, method, &name).await?;
            Ok(proto::RenderModelResponse {
                mermaid: coachflow_model::render_mermaid(view.model.document()),
            })
        })
        .await
    }

    async fn deprecate_model_version(
        &self,
        request: Request<proto::DeprecateModelVersionRequest>,
    ) -> Result<Response<proto::Model>, Status> {
        let method = method!("DeprecateModelVersion");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let name = ModelName::parse("name", &request.get_ref().name, true)?;
            let view = self.core.set_model_deprecated(&principal, method, &name, true).await?;
            Ok(convert::model(&view, false))
        })
        .await
    }

    async fn undeprecate_model_version(
        &self,
        request: Request<proto::UndeprecateModelVersionRequest>,
    ) -> Result<Response<proto::Model>, Status> {
        let method = method!("UndeprecateModelVersion");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let name = ModelName::parse("name", &request.get_ref().name, true)?;
            let view = self.core.set_model_deprecated(&principal, method, &name, false).await?;
            Ok(convert::model(&view, false))
        })
        .await
    }

    async fn diff_model_versions(
        &self,
        request: Request<proto::DiffModelVersionsRequest>,
    ) -> Result<Response<proto::DiffModelVersionsResponse>, Status> {
        let method = method!("DiffModelVersions");
        let principal = principal(&request).map_err(Status::from)?;
        observe(method, &principal, async {
            let request = request.into_inner();
            let name = ModelName::parse("name", &request.name, false)?;
            for (field, version) in [
                ("from_version", request.from_version),
                ("to_version", request.to_version),
            ] {
                if version == 0 {
                    return Err(AppError::invalid(field, "is required: a version number from 1"));
                }
            }
            let diff = self
                .core
                .diff_models(&principal, method, &name, request.from_version, request.to_version)
                .await?;
            Ok(convert::model_diff(&diff))
        })
        .await
    }
}
