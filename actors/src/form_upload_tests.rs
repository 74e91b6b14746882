//! A refused or broken form leaves nothing behind, on the in-memory adapters: no transfer, no bytes.

use super::*;
use crate::test_support::{request, setup_limited, Setup};
use futures::StreamExt;

/// A form as a transport would decode it: the metadata before or after its one file part.
struct TestForm {
    metadata: FileTransferInitialize,
    read: FileTransferInitialize,
    file: Option<FilePart>,
    metadata_first: bool,
}

impl TestForm {
    fn boxed(
        metadata: FileTransferInitialize,
        file: FilePart,
        metadata_first: bool,
    ) -> Box<dyn Form> {
        Box::new(TestForm {
            metadata,
            read: FileTransferInitialize::default(),
            file: Some(file),
            metadata_first,
        })
    }
}

#[async_trait]
impl Form for TestForm {
    async fn next_file(&mut self) -> Result<Option<FilePart>> {
        if self.metadata_first || self.file.is_none() {
            self.read = self.metadata.clone();
        }
        Ok(self.file.take())
    }

    fn request(&self) -> &FileTransferInitialize {
        &self.read
    }

    fn has_required_fields(&self) -> bool {
        self.read.file_name.is_some()
    }
}

fn file(bytes: Vec<u8>) -> FilePart {
    futures::stream::iter(vec![Ok(Bytes::from(bytes))]).boxed()
}

/// A file part whose client goes away after `sent` bytes.
fn cut_file(sent: usize) -> FilePart {
    let chunks = vec![
        Ok(Bytes::from(vec![7u8; sent])),
        Err("the connection was reset".to_string()),
    ];
    futures::stream::iter(chunks).boxed()
}

async fn assert_nothing_left(s: &Setup) {
    assert_eq!(s.store.transfer_count(), 0, "no transfer was created");
    assert!(s.blobs.is_empty(), "no bytes were kept");
}

#[tokio::test]
async fn a_form_refused_for_its_size_leaves_no_transfer_and_no_bytes() {
    for metadata_first in [true, false] {
        let s = setup_limited(Some(100)).await;
        let form = TestForm::boxed(request(None), file(vec![1; 5000]), metadata_first);
        let refused = s
            .broker
            .initialize_and_upload(&s.sender, None, None, form)
            .await;
        assert!(
            matches!(
                refused,
                Err(Error::Refused(ErrorCode::FileSizeExceedsMaximum))
            ),
            "{refused:?} (metadata first: {metadata_first})"
        );
        assert_nothing_left(&s).await;
    }
}

#[tokio::test]
async fn a_form_whose_metadata_after_the_file_names_another_sender_leaves_nothing() {
    let s = setup_limited(None).await;
    let mut foreign = request(None);
    foreign.sender = Some("0192:333333333".into());
    let form = TestForm::boxed(foreign, file(b"small".to_vec()), false);
    let refused = s
        .broker
        .initialize_and_upload(&s.sender, None, None, form)
        .await;
    assert!(
        matches!(refused, Err(Error::Refused(ErrorCode::NoAccess))),
        "{refused:?}"
    );
    assert_nothing_left(&s).await;
}

#[tokio::test]
async fn a_form_whose_client_goes_away_mid_file_leaves_nothing() {
    for metadata_first in [true, false] {
        let s = setup_limited(None).await;
        let form = TestForm::boxed(request(None), cut_file(300_000), metadata_first);
        let broken = s
            .broker
            .initialize_and_upload(&s.sender, None, None, form)
            .await;
        assert!(broken.is_err(), "metadata first: {metadata_first}");
        assert_nothing_left(&s).await;
    }
}
