//! Turning text into embeddings: the [`Embedder`] trait, a deterministic offline embedder for
//! tests and examples, and (feature `openai`) a client for OpenAI-compatible HTTP servers
//! (OpenAI, Ollama, vLLM, text-embeddings-inference, LiteLLM, ...).

use std::future::Future;
use std::pin::Pin;

use crate::error::{Error, Result};

/// What [`Embedder::embed`] returns: one embedding per text, in order.
pub type EmbedFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Vec<f32>>>> + Send + 'a>>;

/// Something that turns texts into embeddings of a fixed length.
pub trait Embedder: Send + Sync {
    /// The length of every embedding it returns; must equal the collection's `dimensions`.
    fn dimensions(&self) -> u32;

    /// A short name for messages: the model.
    fn name(&self) -> &str;

    /// Embeds `texts`, one embedding per text, in order.
    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a>;

    /// Embeds one text.
    fn embed_one<'a>(
        &'a self,
        text: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<Vec<f32>>> + Send + 'a>> {
        Box::pin(async move {
            let texts = [text.to_string()];
            let mut out = self.embed(&texts).await?;
            out.pop().ok_or_else(|| Error::Embedder {
                embedder: self.name().to_string(),
                message: "returned no embedding for one text".to_string(),
            })
        })
    }
}

/// A deterministic offline embedder: feature hashing of words and character trigrams, signed,
/// then L2-normalised. Texts sharing words land close together, so it behaves like a (weak)
/// lexical embedding model with no download and no network: for tests, examples and demos.
/// The same text always gives the same embedding, on every machine.
#[derive(Clone, Copy, Debug)]
pub struct HashEmbedder {
    dimensions: u32,
}

impl HashEmbedder {
    pub fn new(dimensions: u32) -> HashEmbedder {
        HashEmbedder {
            dimensions: dimensions.max(1),
        }
    }

    /// The embedding of `text`, synchronously.
    pub fn embed_text(&self, text: &str) -> Vec<f32> {
        let dims = self.dimensions as usize;
        let mut v = vec![0f32; dims];
        let lower = text.to_lowercase();
        let mut add = |feature: &str, weight: f32| {
            let h = fnv1a64(feature.as_bytes());
            let index = (h % dims as u64) as usize;
            let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
            v[index] += sign * weight;
        };
        for word in lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            add(word, 1.0);
            let padded: Vec<char> = format!(" {word} ").chars().collect();
            for gram in padded.windows(3) {
                let gram: String = gram.iter().collect();
                add(&gram, 0.3);
            }
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm == 0.0 {
            // No words: a fixed unit vector, so cosine distance stays defined.
            v[0] = 1.0;
        } else {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        v
    }
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

impl Embedder for HashEmbedder {
    fn dimensions(&self) -> u32 {
        self.dimensions
    }

    fn name(&self) -> &str {
        "hash"
    }

    fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
        Box::pin(async move { Ok(texts.iter().map(|t| self.embed_text(t)).collect()) })
    }
}

#[cfg(feature = "openai")]
pub use openai::{OpenAiConfig, OpenAiEmbedder};

#[cfg(feature = "openai")]
mod openai {
    use std::time::Duration;

    use super::{EmbedFuture, Embedder};
    use crate::error::{Error, Result};

    /// Where and how to reach an OpenAI-compatible `/embeddings` endpoint.
    #[derive(Clone, Debug)]
    pub struct OpenAiConfig {
        /// Up to and including the version: `https://api.openai.com/v1`,
        /// `http://localhost:11434/v1` (Ollama).
        pub base_url: String,
        pub model: String,
        /// Sent as `Authorization: Bearer ...` when set.
        pub api_key: Option<String>,
        /// The embedding length the model returns (checked on every response).
        pub dimensions: u32,
        /// Also send `dimensions` in the request, for models that can shorten their output
        /// (`text-embedding-3-*`).
        pub request_dimensions: bool,
        /// Texts per request.
        pub batch_size: usize,
        /// Retries of a request answered 429 or 5xx, or failed in transit, with backoff.
        pub max_retries: u32,
        pub timeout: Duration,
    }

    impl OpenAiConfig {
        pub fn new(
            base_url: impl Into<String>,
            model: impl Into<String>,
            dimensions: u32,
        ) -> OpenAiConfig {
            OpenAiConfig {
                base_url: base_url.into().trim_end_matches('/').to_string(),
                model: model.into(),
                api_key: None,
                dimensions,
                request_dimensions: false,
                batch_size: 128,
                max_retries: 4,
                timeout: Duration::from_secs(60),
            }
        }

        /// From the environment: `OPENAI_BASE_URL` (default `https://api.openai.com/v1`),
        /// `PGSTACK_EMBEDDING_MODEL` (default `text-embedding-3-small`), `OPENAI_API_KEY`.
        pub fn from_env(dimensions: u32) -> OpenAiConfig {
            let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
            let mut config = OpenAiConfig::new(
                var("OPENAI_BASE_URL").unwrap_or_else(|| "https://api.openai.com/v1".to_string()),
                var("PGSTACK_EMBEDDING_MODEL")
                    .unwrap_or_else(|| "text-embedding-3-small".to_string()),
                dimensions,
            );
            config.api_key = var("OPENAI_API_KEY");
            config
        }

        pub fn api_key(mut self, key: impl Into<String>) -> OpenAiConfig {
            self.api_key = Some(key.into());
            self
        }
    }

    /// A client for `POST {base_url}/embeddings`, batching texts and retrying transient
    /// failures. Requests run on tokio's blocking pool.
    #[derive(Clone, Debug)]
    pub struct OpenAiEmbedder {
        config: OpenAiConfig,
        agent: ureq::Agent,
    }

    /// The largest response read (a batch of 128 × 3072 floats is about 8 MB of JSON).
    const MAX_RESPONSE_BYTES: u64 = 64 << 20;

    enum Attempt {
        Done(Vec<Vec<f32>>),
        Retry(String),
        Fail(String),
    }

    impl OpenAiEmbedder {
        pub fn new(config: OpenAiConfig) -> OpenAiEmbedder {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .timeout_global(Some(config.timeout))
                .http_status_as_error(false)
                .build()
                .into();
            OpenAiEmbedder { config, agent }
        }

        fn error(&self, message: String) -> Error {
            Error::Embedder {
                embedder: format!("{} at {}", self.config.model, self.config.base_url),
                message,
            }
        }

        fn request_body(&self, texts: &[String]) -> String {
            let mut body = serde_json::json!({ "model": self.config.model, "input": texts });
            if self.config.request_dimensions {
                body["dimensions"] = self.config.dimensions.into();
            }
            body.to_string()
        }

        /// One request, blocking.
        fn post(
            agent: &ureq::Agent,
            url: &str,
            key: Option<&str>,
            body: String,
            dims: usize,
            count: usize,
        ) -> Attempt {
            let mut request = agent.post(url).header("Content-Type", "application/json");
            if let Some(key) = key {
                request = request.header("Authorization", format!("Bearer {key}"));
            }
            let mut response = match request.send(body) {
                Ok(r) => r,
                Err(e) => return Attempt::Retry(format!("request failed: {e}")),
            };
            let status = response.status().as_u16();
            let text = match response
                .body_mut()
                .with_config()
                .limit(MAX_RESPONSE_BYTES)
                .read_to_string()
            {
                Ok(t) => t,
                Err(e) => return Attempt::Retry(format!("reading the response failed: {e}")),
            };
            let excerpt = || text.chars().take(300).collect::<String>();
            if status == 429 || status >= 500 {
                return Attempt::Retry(format!("HTTP {status}: {}", excerpt()));
            }
            if status != 200 {
                let hint = match status {
                    401 | 403 => " (check the API key: OPENAI_API_KEY)",
                    404 => " (check the base URL, which ends with /v1, and the model name)",
                    _ => "",
                };
                return Attempt::Fail(format!("HTTP {status}{hint}: {}", excerpt()));
            }
            let parsed: serde_json::Value = match serde_json::from_str(&text) {
                Ok(v) => v,
                Err(e) => {
                    return Attempt::Fail(format!("the response is not JSON ({e}): {}", excerpt()));
                }
            };
            let Some(data) = parsed.get("data").and_then(|d| d.as_array()) else {
                return Attempt::Fail(format!("the response has no `data` array: {}", excerpt()));
            };
            let mut out: Vec<Option<Vec<f32>>> = vec![None; count];
            for (n, item) in data.iter().enumerate() {
                let index = item
                    .get("index")
                    .and_then(|i| i.as_u64())
                    .map_or(n, |i| i as usize);
                let Some(values) = item.get("embedding").and_then(|e| e.as_array()) else {
                    return Attempt::Fail(
                        "an item of `data` has no `embedding` array of numbers".to_string(),
                    );
                };
                let vector: Option<Vec<f32>> = values
                    .iter()
                    .map(|v| v.as_f64().map(|f| f as f32))
                    .collect();
                let Some(vector) = vector else {
                    return Attempt::Fail(
                        "an embedding holds something other than numbers".to_string(),
                    );
                };
                if vector.len() != dims {
                    return Attempt::Fail(format!(
                        "the model returned {} dimensions, but the collection expects {dims}; \
                         choose the matching model or set `dimensions` in the spec to {}",
                        vector.len(),
                        vector.len()
                    ));
                }
                match out.get_mut(index) {
                    Some(slot) => *slot = Some(vector),
                    None => {
                        return Attempt::Fail(format!(
                            "the response has an out-of-range index {index}"
                        ));
                    }
                }
            }
            match out.into_iter().collect::<Option<Vec<_>>>() {
                Some(all) => Attempt::Done(all),
                None => Attempt::Fail(format!("asked for {count} embeddings, got {}", data.len())),
            }
        }

        async fn embed_batch(&self, texts: &[String]) -> Result<Vec<Vec<f32>>> {
            let url = format!("{}/embeddings", self.config.base_url);
            let body = self.request_body(texts);
            let mut delay = Duration::from_millis(500);
            let mut attempt = 0;
            loop {
                attempt += 1;
                let (agent, url2, key, body2) = (
                    self.agent.clone(),
                    url.clone(),
                    self.config.api_key.clone(),
                    body.clone(),
                );
                let (dims, count) = (self.config.dimensions as usize, texts.len());
                let outcome = tokio::task::spawn_blocking(move || {
                    Self::post(&agent, &url2, key.as_deref(), body2, dims, count)
                })
                .await
                .map_err(|e| self.error(format!("the request task failed: {e}")))?;
                match outcome {
                    Attempt::Done(v) => return Ok(v),
                    Attempt::Fail(why) => return Err(self.error(why)),
                    Attempt::Retry(why) if attempt > self.config.max_retries => {
                        return Err(self.error(format!("{why} (after {attempt} attempts)")));
                    }
                    Attempt::Retry(_) => {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(20));
                    }
                }
            }
        }
    }

    impl Embedder for OpenAiEmbedder {
        fn dimensions(&self) -> u32 {
            self.config.dimensions
        }

        fn name(&self) -> &str {
            &self.config.model
        }

        fn embed<'a>(&'a self, texts: &'a [String]) -> EmbedFuture<'a> {
            Box::pin(async move {
                let mut out = Vec::with_capacity(texts.len());
                for batch in texts.chunks(self.config.batch_size.max(1)) {
                    out.extend(self.embed_batch(batch).await?);
                }
                Ok(out)
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_embeddings_are_deterministic_unit_vectors_and_lexical() {
        let e = HashEmbedder::new(64);
        let a = e.embed_text("PostgreSQL job queue");
        assert_eq!(a, e.embed_text("PostgreSQL job queue"));
        let norm: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5);
        let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(a, b)| a * b).sum::<f32>();
        let near = e.embed_text("a queue in PostgreSQL");
        let far = e.embed_text("chocolate cake recipe");
        assert!(dot(&a, &near) > dot(&a, &far));
        assert_eq!(e.embed_text("").len(), 64);
    }
}
