//! Reading the initialize-and-upload form (`multipart/form-data`, spec 1.4): `Metadata.*` fields bind
//! to the initialize request in any order, C#-style names compared case-insensitively; the file part
//! `FileTransfer` is handed out to be streamed, never buffered. Everything but the file is bounded:
//! the number of fields, each field's size, all metadata together, and every byte outside the file
//! part (a form without a boundary, or part headers that never end, would otherwise be held whole).

use crate::http::error::ApiError;
use axum::body::Body;
use axum::http::{header, HeaderMap};
use axum::BoxError;
use broker_actors::form_upload::{FilePart, Form};
use broker_actors::Error;
use broker_protocol::transfer::FileTransferInitialize;
use broker_protocol::ErrorCode;
use futures::StreamExt;
use multer::{Field, Multipart};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// A metadata field may hold at most this much; only the file part is unbounded.
pub const MAX_METADATA_FIELD: usize = 64 << 10;
/// At most this many fields (recipients are repeated fields).
pub const MAX_FIELDS: usize = 10_000;

pub use broker_actors::form_upload::FILE_FIELD;
/// The form's bytes outside its file part (boundaries, part headers, metadata values) at most: what
/// the multipart parser may have to hold while it looks for the next boundary.
pub const MAX_OUTSIDE_FILE: u64 = 2 << 20;

/// The form's parts, read in order.
pub struct FormReader {
    multipart: Multipart<'static>,
    fields: usize,
    budget: Arc<OutsideFile>,
}

/// Counts the bytes that arrive while no file part is being read.
#[derive(Default)]
struct OutsideFile {
    in_file: AtomicBool,
    bytes: AtomicU64,
}

/// The form sent more than [`MAX_OUTSIDE_FILE`] bytes outside its file part.
#[derive(Debug, thiserror::Error)]
#[error("the form has more than {MAX_OUTSIDE_FILE} bytes outside its file part")]
struct TooMuchOutsideFile;

/// What the metadata fields read so far say.
pub struct FormMetadata {
    request: FileTransferInitialize,
    bytes: usize,
    max_bytes: usize,
}

impl FormMetadata {
    /// All metadata fields together may hold `max_bytes`.
    pub fn new(max_bytes: usize) -> FormMetadata {
        FormMetadata {
            // As in JSON, an omitted sender's reference binds as "" and fails validation.
            request: FileTransferInitialize {
                senders_file_transfer_reference: Some(String::new()),
                ..Default::default()
            },
            bytes: 0,
            max_bytes,
        }
    }

    /// The initialize request as bound from the fields read so far.
    pub fn request(&self) -> &FileTransferInitialize {
        &self.request
    }

    /// Whether the fields initialize requires have all been read (a form that sends them before the
    /// file is checked before a byte of the file is stored).
    pub fn has_required_fields(&self) -> bool {
        let r = &self.request;
        r.file_name.is_some()
            && r.resource_id.is_some()
            && r.sender.is_some()
            && r.recipients.is_some()
    }
}

/// A form read for initialize-and-upload: the reader and what its metadata fields said so far.
pub struct FormUpload {
    reader: FormReader,
    metadata: FormMetadata,
}

impl FormUpload {
    /// Reads `body` as `multipart/form-data` (415 for another content type or no boundary); all
    /// metadata fields together may hold `max_metadata` bytes.
    pub fn new(headers: &HeaderMap, body: Body, max_metadata: usize) -> Result<Self, ApiError> {
        Ok(FormUpload {
            reader: FormReader::new(headers, body)?,
            metadata: FormMetadata::new(max_metadata),
        })
    }
}

#[async_trait::async_trait]
impl Form for FormUpload {
    async fn next_file(&mut self) -> Result<Option<FilePart>, Error> {
        let field = self.reader.next_file(&mut self.metadata).await?;
        Ok(field.map(|f| f.map(|chunk| chunk.map_err(|e| e.to_string())).boxed()))
    }

    fn request(&self) -> &FileTransferInitialize {
        self.metadata.request()
    }

    fn has_required_fields(&self) -> bool {
        self.metadata.has_required_fields()
    }
}

impl FormReader {
    /// Reads `body` as `multipart/form-data` (415 for another content type or no boundary).
    pub fn new(headers: &HeaderMap, body: Body) -> Result<FormReader, ApiError> {
        let boundary = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|t| multer::parse_boundary(t).ok())
            .ok_or(ApiError::UnsupportedMediaType("multipart/form-data"))?;
        Ok(Self::from_stream(body.into_data_stream(), boundary))
    }

    /// Reads a form with `boundary` from a stream of its bytes.
    pub fn from_stream<S, E>(stream: S, boundary: String) -> FormReader
    where
        S: futures::Stream<Item = Result<bytes::Bytes, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>> + 'static,
    {
        let budget = Arc::new(OutsideFile::default());
        let counted = {
            let budget = budget.clone();
            stream.map(move |chunk| {
                let chunk = chunk.map_err(Into::into)?;
                if !budget.in_file.load(Ordering::Relaxed) {
                    let seen = budget
                        .bytes
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    if seen + chunk.len() as u64 > MAX_OUTSIDE_FILE {
                        return Err(Box::new(TooMuchOutsideFile) as BoxError);
                    }
                }
                Ok(chunk)
            })
        };
        FormReader {
            multipart: Multipart::new(counted, boundary),
            fields: 0,
            budget,
        }
    }

    /// Applies metadata fields to `metadata` up to the next file part and returns it; `None` at the
    /// end of the form.
    pub async fn next_file(
        &mut self,
        metadata: &mut FormMetadata,
    ) -> Result<Option<Field<'static>>, Error> {
        self.budget.in_file.store(false, Ordering::Relaxed);
        loop {
            let field = self.multipart.next_field().await.map_err(form_error)?;
            let Some(field) = field else {
                return Ok(None);
            };
            self.fields += 1;
            if self.fields > MAX_FIELDS {
                return Err(Error::Unreadable(format!(
                    "The form has more than {MAX_FIELDS} fields."
                )));
            }
            let name = field.name().unwrap_or_default().to_string();
            if name.eq_ignore_ascii_case(FILE_FIELD) {
                self.budget.in_file.store(true, Ordering::Relaxed);
                return Ok(Some(field));
            }
            let budget = metadata.max_bytes - metadata.bytes;
            let value = read_field(field, &name, budget).await?;
            metadata.bytes += value.len();
            apply_metadata(&mut metadata.request, &name, value)?;
        }
    }
}

/// A form that cannot be read: 413 past the bytes allowed outside the file, else 400.
fn form_error(e: multer::Error) -> Error {
    if let multer::Error::StreamReadFailed(inner) = &e {
        if inner.downcast_ref::<TooMuchOutsideFile>().is_some() {
            return ErrorCode::RequestBodyTooLarge.into();
        }
    }
    Error::Unreadable(format!("The form could not be read: {e}"))
}

/// Reads a metadata field, refusing more than [`MAX_METADATA_FIELD`] bytes (400) or more than what
/// is left of the form's metadata budget (413).
async fn read_field(mut field: Field<'static>, name: &str, budget: usize) -> Result<String, Error> {
    let mut value = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(form_error)? {
        if value.len() + chunk.len() > MAX_METADATA_FIELD {
            return Err(Error::field(
                name,
                format!("The field is longer than {MAX_METADATA_FIELD} bytes."),
            ));
        }
        if value.len() + chunk.len() > budget {
            return Err(ErrorCode::RequestBodyTooLarge.into());
        }
        value.extend_from_slice(&chunk);
    }
    String::from_utf8(value).map_err(|_| Error::field(name, "The field is not valid UTF-8."))
}

/// Applies one `Metadata.*` form field to the initialize request.
fn apply_metadata(
    request: &mut FileTransferInitialize,
    name: &str,
    value: String,
) -> Result<(), Error> {
    let lower = name.to_ascii_lowercase();
    let Some(field) = lower.strip_prefix("metadata.") else {
        return Ok(());
    };
    let original = &name["metadata.".len()..];
    match field {
        "filename" => request.file_name = Some(value),
        "resourceid" => request.resource_id = Some(value),
        "sendersfiletransferreference" => request.senders_file_transfer_reference = Some(value),
        "sender" => request.sender = Some(value),
        "checksum" => request.checksum = Some(value),
        "disablevirusscan" => {
            let v = value
                .trim()
                .to_ascii_lowercase()
                .parse::<bool>()
                .map_err(|_| {
                    Error::field(
                        "Metadata.DisableVirusScan",
                        format!("The value '{value}' is not valid."),
                    )
                })?;
            request.disable_virus_scan = Some(v);
        }
        f if f == "recipients" || (f.starts_with("recipients[") && f.ends_with(']')) => {
            request.recipients.get_or_insert_with(Vec::new).push(value)
        }
        f if f.starts_with("propertylist.") || f.starts_with("propertylist[") => {
            let key = original["propertylist".len()..]
                .trim_start_matches(['.', '['])
                .trim_end_matches(']');
            request
                .property_list
                .get_or_insert_with(BTreeMap::new)
                .insert(key.to_string(), value);
        }
        _ => {}
    }
    Ok(())
}
