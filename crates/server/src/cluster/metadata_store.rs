//! The metadata quorum's state machine on this node: committed batches folded into the
//! [`MetadataImage`], published to the rest of the broker after each batch.
//!
//! Readers take the latest image from [`MetadataStore::subscribe`] (an `Arc`, so a handler
//! answers a whole request from one consistent image) and wake when it changes.

use std::sync::Arc;

use strom_metadata::{decode_batch, MetadataImage};
use tokio::sync::watch;

pub(crate) struct MetadataStore {
    image: MetadataImage,
    published: watch::Sender<Arc<MetadataImage>>,
}

impl MetadataStore {
    pub(crate) fn new() -> MetadataStore {
        let (published, _) = watch::channel(Arc::new(MetadataImage::new()));
        MetadataStore {
            image: MetadataImage::new(),
            published,
        }
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.published.subscribe()
    }

    fn publish(&self) {
        self.published.send_replace(Arc::new(self.image.clone()));
    }
}

impl strom_quorum::StateMachine for MetadataStore {
    fn apply(&mut self, index: u64, command: &[u8]) {
        match decode_batch(command) {
            Ok(records) => {
                let (_, errors) = self.image.apply_batch(index, &records);
                for error in errors {
                    tracing::error!(index, %error, "metadata record skipped: it does not fit the image");
                }
            }
            // Every node meets the same bytes: skipping keeps them all alike, and says so.
            Err(error) => tracing::error!(index, %error, "metadata batch skipped"),
        }
        self.image.offset = self.image.offset.max(index);
        self.publish();
    }

    fn snapshot(&self) -> Vec<u8> {
        self.image.to_snapshot()
    }

    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String> {
        self.image = MetadataImage::from_snapshot(snapshot).map_err(|e| e.to_string())?;
        self.publish();
        Ok(())
    }
}
