//! The gRPC status of an oversized request. The gRPC specification says a message over the
//! receiver's limit is RESOURCE_EXHAUSTED; tonic's decoder answers OUT_OF_RANGE. This layer
//! rewrites exactly that answer, so clients see the standard code (with tonic's message,
//! which names the size and the limit).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::HeaderValue;

/// Wraps the gRPC server's service.
#[derive(Debug, Clone)]
pub struct OversizeStatus<S> {
    inner: S,
}

impl<S> OversizeStatus<S> {
    pub fn layer() -> impl tower::Layer<S, Service = OversizeStatus<S>> + Clone {
        tower::layer::layer_fn(|inner| OversizeStatus { inner })
    }
}

const OUT_OF_RANGE: &str = "11";
const RESOURCE_EXHAUSTED: HeaderValue = HeaderValue::from_static("8");
/// The start of tonic's message, percent-encoded as `grpc-message` carries it.
const TOO_LARGE: &str = "Error,%20decoded%20message%20length%20too%20large";

fn rewrite(headers: &mut http::HeaderMap) {
    let out_of_range = headers.get("grpc-status").is_some_and(|status| status == OUT_OF_RANGE);
    let too_large = headers
        .get("grpc-message")
        .and_then(|message| message.to_str().ok())
        .is_some_and(|message| message.starts_with(TOO_LARGE));
    if out_of_range && too_large {
        headers.insert("grpc-status", RESOURCE_EXHAUSTED);
    }
}

impl<S, RequestBody, ResponseBody> tower::Service<http::Request<RequestBody>> for OversizeStatus<S>
where
    S: tower::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            rewrite(response.headers_mut());
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_size_limit_answer_is_rewritten() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", HeaderValue::from_static("11"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("Error,%20decoded%20message%20length%20too%20large:%20found%20100%20bytes"),
        );
        rewrite(&mut headers);
        assert_eq!(headers["grpc-status"], "8");

        let mut other = http::HeaderMap::new();
        other.insert("grpc-status", HeaderValue::from_static("11"));
        other.insert("grpc-message", HeaderValue::from_static("page%20out%20of%20range"));
        rewrite(&mut other);
        assert_eq!(other["grpc-status"], "11");
    }
}
