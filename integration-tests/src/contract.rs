//! The contract of the public events, `docs/asyncapi.yaml`, as a validator: which event
//! types it describes, and whether a message as a consumer receives it, in binary or
//! structured content mode, is one of them.
//!
//! Each channel of the document lists a binary message (`application/json`, its
//! `cloudEvents_type` header a `const`) and a structured one
//! (`application/cloudevents+json`, its `type` a `const`); a message is picked by its event
//! type and checked against that message's schemas with a JSON Schema validator (draft 7,
//! the base of AsyncAPI's schema format, with formats asserted), `$ref`s resolved within
//! the document. What JSON Schema cannot say is checked here too, as the document's
//! description states it: the `id` is `{subject}/events/{sequence}`, the data's
//! `engagement` is the `subject`, and the `source` is the subject's tenant's.
//!
//! Every error names the message and the place at fault, e.g.
//! `taskCompleted: payload/sequence: want integer, but got string` or
//! `taskCompleted: payload: additionalProperties 'notes' not allowed`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use boon::{Compiler, Draft, SchemaIndex, Schemas, ValidationError};
use serde_json::{Map, Value};

/// Content type of a binary-mode message: the body is the event's data.
pub const BINARY_CONTENT_TYPE: &str = "application/json";
/// Content type of a structured-mode message: the body is the whole CloudEvent.
pub const STRUCTURED_CONTENT_TYPE: &str = "application/cloudevents+json";

/// The name the document is registered under for `$ref` resolution. Its `$ref`s are
/// fragments (`#/components/schemas/…`), so they resolve within the document and nothing
/// is ever loaded from elsewhere.
const DOCUMENT_URL: &str = "urn:coachflow:asyncapi";

/// The event contract, loaded and compiled.
pub struct Contract {
    document: Value,
    schemas: Schemas,
    /// Binary-mode messages by event type.
    binary: BTreeMap<String, Message>,
    /// Structured-mode messages by event type.
    structured: BTreeMap<String, Message>,
}

/// One message of the document, compiled.
struct Message {
    name: String,
    /// Where it is in the document.
    pointer: String,
    content_type: String,
    headers: Option<SchemaIndex>,
    payload: SchemaIndex,
}

/// An example a binary message of the document gives: its headers and payload.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryExample {
    pub message: String,
    pub headers: Value,
    pub payload: Value,
}

impl fmt::Debug for Contract {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Contract")
            .field("binary", &self.binary.keys().collect::<Vec<_>>())
            .field("structured", &self.structured.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Contract {
    /// `docs/asyncapi.yaml` of this workspace.
    pub fn path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/asyncapi.yaml")
    }

    /// Loads and compiles `docs/asyncapi.yaml`; panics, naming the problem, when it cannot.
    pub fn load() -> Contract {
        let path = Contract::path();
        let text = std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        Contract::parse(&text).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
    }

    /// Compiles an AsyncAPI document given as YAML (or JSON) text.
    pub fn parse(text: &str) -> Result<Contract, String> {
        let document: Value = yaml_serde::from_str(text).map_err(|error| format!("not YAML: {error}"))?;
        let mut compiler = Compiler::new();
        compiler.set_default_draft(Draft::V7);
        compiler.enable_format_assertions();
        compiler
            .add_resource(DOCUMENT_URL, document.clone())
            .map_err(|error| format!("{error:#}"))?;
        let mut contract = Contract {
            document,
            schemas: Schemas::new(),
            binary: BTreeMap::new(),
            structured: BTreeMap::new(),
        };
        for pointer in contract.channel_messages()? {
            contract.add_message(&mut compiler, &pointer)?;
        }
        if contract.binary.is_empty() {
            return Err("no channel has a binary (application/json) message".to_owned());
        }
        Ok(contract)
    }

    /// The CloudEvents types the document has a binary message for, sorted.
    pub fn event_types(&self) -> Vec<String> {
        self.binary.keys().cloned().collect()
    }

    /// The CloudEvents types the document has a structured message for, sorted.
    pub fn structured_event_types(&self) -> Vec<String> {
        self.structured.keys().cloned().collect()
    }

    /// The examples of the binary messages, to check that the document agrees with itself.
    pub fn binary_examples(&self) -> Vec<BinaryExample> {
        let mut examples = Vec::new();
        for message in self.binary.values() {
            let Some(found) = self.message_object(message) else {
                continue;
            };
            for example in found.get("examples").and_then(Value::as_array).into_iter().flatten() {
                examples.push(BinaryExample {
                    message: message.name.clone(),
                    headers: example.get("headers").cloned().unwrap_or(Value::Null),
                    payload: example.get("payload").cloned().unwrap_or(Value::Null),
                });
            }
        }
        examples
    }

    /// Checks a binary-mode message: `headers` (an object of header name → value, as the
    /// AMQP headers table holds them), the `content_type` property and the body. The message
    /// is the one whose `cloudEvents_type` is the header's.
    pub fn validate_binary(&self, headers: &Value, content_type: &str, body: &[u8]) -> Result<(), Vec<String>> {
        let Some(header_table) = headers.as_object() else {
            return Err(vec![format!(
                "headers: want an object of AMQP headers, but got {headers}"
            )]);
        };
        let Some(event_type) = header_table.get("cloudEvents_type") else {
            return Err(vec![
                "headers/cloudEvents_type: missing, so no message of the contract can be chosen".to_owned(),
            ]);
        };
        let Some(message) = event_type.as_str().and_then(|event_type| self.binary.get(event_type)) else {
            return Err(vec![format!(
                "headers/cloudEvents_type: {event_type} is not an event type of the contract (it has {})",
                self.event_types().join(", ")
            )]);
        };
        let mut errors = Vec::new();
        if content_type != message.content_type {
            errors.push(format!(
                "{}: content_type: want {}, but got {content_type:?}",
                message.name, message.content_type
            ));
        }
        if let Some(schema) = message.headers {
            self.check(schema, headers, &message.name, "headers", &mut errors);
        }
        match serde_json::from_slice::<Value>(body) {
            Ok(payload) => {
                self.check(message.payload, &payload, &message.name, "payload", &mut errors);
                let attribute = |name: &str| header_table.get(name).and_then(Value::as_str);
                attributes_agree(
                    &message.name,
                    [
                        ("headers/cloudEvents_id", attribute("cloudEvents_id")),
                        ("headers/cloudEvents_source", attribute("cloudEvents_source")),
                        ("headers/cloudEvents_subject", attribute("cloudEvents_subject")),
                    ],
                    ("payload", &payload),
                    &mut errors,
                );
            }
            Err(error) => errors.push(format!("{}: payload: not JSON: {error}", message.name)),
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Checks the body of a structured-mode message: one CloudEvents JSON object, checked
    /// against the message whose `type` is its `type`.
    pub fn validate_structured(&self, body: &[u8]) -> Result<(), Vec<String>> {
        let event: Value = serde_json::from_slice(body).map_err(|error| vec![format!("body: not JSON: {error}")])?;
        let Some(event_type) = event.get("type") else {
            return Err(vec![
                "body/type: missing, so no message of the contract can be chosen".to_owned(),
            ]);
        };
        let Some(message) = event_type
            .as_str()
            .and_then(|event_type| self.structured.get(event_type))
        else {
            return Err(vec![format!(
                "body/type: {event_type} is not an event type of the contract (it has {})",
                self.structured_event_types().join(", ")
            )]);
        };
        let mut errors = Vec::new();
        self.check(message.payload, &event, &message.name, "payload", &mut errors);
        let attribute = |name: &str| event.get(name).and_then(Value::as_str);
        attributes_agree(
            &message.name,
            [
                ("payload/id", attribute("id")),
                ("payload/source", attribute("source")),
                ("payload/subject", attribute("subject")),
            ],
            ("payload/data", event.get("data").unwrap_or(&Value::Null)),
            &mut errors,
        );
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Validates `instance` against a compiled schema; each failure is added to `errors` as
    /// `{message}: {part}{instance path}: {what is wrong}`.
    fn check(&self, schema: SchemaIndex, instance: &Value, message: &str, part: &str, errors: &mut Vec<String>) {
        if let Err(error) = self.schemas.validate(instance, schema) {
            let mut leaves = Vec::new();
            collect_leaves(&error, &mut leaves);
            errors.extend(leaves.into_iter().map(|leaf| format!("{message}: {part}{leaf}")));
        }
    }

    /// JSON pointers to every message the channels list, in the document's order, each
    /// resolved through `$ref`s.
    fn channel_messages(&self) -> Result<Vec<String>, String> {
        let channels = self
            .document
            .get("channels")
            .and_then(Value::as_object)
            .ok_or("the document has no channels")?;
        let mut pointers = Vec::new();
        for (channel_name, channel) in channels {
            let (channel_pointer, channel) = self.resolve(format!("/channels/{}", escape(channel_name)), channel)?;
            let messages = channel.get("messages").and_then(Value::as_object).into_iter().flatten();
            for (message_name, message) in messages {
                let (pointer, _) =
                    self.resolve(format!("{channel_pointer}/messages/{}", escape(message_name)), message)?;
                if !pointers.contains(&pointer) {
                    pointers.push(pointer);
                }
            }
        }
        Ok(pointers)
    }

    /// Follows `value`'s local `$ref`s, if any: the pointer and value they lead to.
    fn resolve<'a>(&'a self, mut pointer: String, mut value: &'a Value) -> Result<(String, &'a Value), String> {
        for _ in 0..16 {
            let Some(reference) = value.get("$ref").and_then(Value::as_str) else {
                return Ok((pointer, value));
            };
            let target = reference.strip_prefix('#').ok_or_else(|| {
                format!("{pointer}: only references within the document are supported, not {reference}")
            })?;
            value = self
                .document
                .pointer(target)
                .ok_or_else(|| format!("{pointer}: {reference} does not exist"))?;
            pointer = target.to_owned();
        }
        Err(format!("{pointer}: too many nested references"))
    }

    fn message_object(&self, message: &Message) -> Option<&Map<String, Value>> {
        self.document.pointer(&message.pointer)?.as_object()
    }

    /// Compiles the message at `pointer` and files it under its event type.
    fn add_message(&mut self, compiler: &mut Compiler, pointer: &str) -> Result<(), String> {
        let message = self
            .document
            .pointer(pointer)
            .and_then(Value::as_object)
            .ok_or_else(|| format!("{pointer}: not a message object"))?;
        let name = message.get("name").and_then(Value::as_str).map_or_else(
            || pointer.rsplit('/').next().unwrap_or(pointer).to_owned(),
            str::to_owned,
        );
        let content_type = message
            .get("contentType")
            .or_else(|| self.document.get("defaultContentType"))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("{pointer}: no contentType and no defaultContentType"))?
            .to_owned();
        let (attribute, part) = match content_type.as_str() {
            BINARY_CONTENT_TYPE => ("cloudEvents_type", "headers"),
            STRUCTURED_CONTENT_TYPE => ("type", "payload"),
            other => {
                return Err(format!(
                    "{pointer}: content type {other} is neither binary nor structured mode"
                ));
            }
        };
        let event_type = message
            .get(part)
            .and_then(|schema| self.constant(schema, attribute))
            .ok_or_else(|| format!("{pointer}: its {part} schema does not fix `{attribute}` with a const"))?;
        let compile = |compiler: &mut Compiler, schemas: &mut Schemas, part: &str| {
            compiler
                .compile(&format!("{DOCUMENT_URL}#{pointer}/{part}"), schemas)
                .map_err(|error| format!("{pointer}/{part}: {error:#}"))
        };
        let headers = match message.get("headers") {
            Some(_) => Some(compile(compiler, &mut self.schemas, "headers")?),
            None => None,
        };
        let payload = compile(compiler, &mut self.schemas, "payload")?;
        let compiled = Message {
            name,
            pointer: pointer.to_owned(),
            content_type,
            headers,
            payload,
        };
        let by_type = if part == "headers" {
            &mut self.binary
        } else {
            &mut self.structured
        };
        if let Some(other) = by_type.insert(event_type.clone(), compiled) {
            return Err(format!("{pointer}: {event_type} already has a message, {}", other.name));
        }
        Ok(())
    }

    /// The `const` a schema (through `$ref`s and `allOf`) gives property `name`.
    fn constant(&self, schema: &Value, name: &str) -> Option<String> {
        let (_, schema) = self.resolve(String::new(), schema).ok()?;
        if let Some(constant) = schema
            .pointer(&format!("/properties/{}/const", escape(name)))
            .and_then(Value::as_str)
        {
            return Some(constant.to_owned());
        }
        schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find_map(|part| self.constant(part, name))
    }
}

/// The innermost errors of a validation failure, as `{instance path}: {what is wrong}`.
fn collect_leaves(error: &ValidationError<'_, '_>, leaves: &mut Vec<String>) {
    if error.causes.is_empty() {
        leaves.push(format!("{}: {}", error.instance_location, error.kind));
        return;
    }
    for cause in &error.causes {
        collect_leaves(cause, leaves);
    }
}

/// The rules between attributes and data that JSON Schema cannot state: the id is
/// `{subject}/events/{sequence}`, the data's `engagement` is the subject, and the source
/// is the subject's tenant's. `attributes` are `(where, value)` of the id, source and
/// subject; a missing one was already reported by the schema.
fn attributes_agree(
    message: &str,
    attributes: [(&str, Option<&str>); 3],
    (data_place, data): (&str, &Value),
    errors: &mut Vec<String>,
) {
    let [(id_place, id), (source_place, source), (_, subject)] = attributes;
    let Some(subject) = subject else {
        return;
    };
    if let (Some(id), Some(sequence)) = (id, data.get("sequence").and_then(Value::as_u64)) {
        let expected = format!("{subject}/events/{sequence}");
        if id != expected {
            errors.push(format!(
                "{message}: {id_place}: want {expected:?} ({{subject}}/events/{{sequence}}), but got {id:?}"
            ));
        }
    }
    if let Some(engagement) = data.get("engagement").and_then(Value::as_str)
        && engagement != subject
    {
        errors.push(format!(
            "{message}: {data_place}/engagement: want the subject {subject:?}, but got {engagement:?}"
        ));
    }
    if let (Some(source), Some(tenant)) = (
        source,
        subject.strip_prefix("tenants/").and_then(|rest| rest.split('/').next()),
    ) {
        let expected = format!("//coachflow.dev/tenants/{tenant}");
        if source != expected {
            errors.push(format!(
                "{message}: {source_place}: want {expected:?}, the subject's tenant's, but got {source:?}"
            ));
        }
    }
}

/// A JSON pointer token.
fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}
