//! Any bytes as a metadata log batch or snapshot: decoding must accept or refuse, never
//! panic; whatever decodes must apply to an image without panicking (a record that does not
//! fit is refused, not a crash: every node applies the same log), and the image's own
//! snapshot must read back to the same image.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_metadata::{decode_batch, MetadataImage};

fuzz_target!(|data: &[u8]| {
    if let Ok(records) = decode_batch(data) {
        let mut image = MetadataImage::new();
        let _ = image.apply_batch(1, &records);
        let _ = image.apply_batch(2, &records);
        let snapshot = image.to_snapshot();
        let back = MetadataImage::from_snapshot(&snapshot).expect("an image's own snapshot reads back");
        assert_eq!(back, image, "snapshot round trip");
    }
    if let Ok(image) = MetadataImage::from_snapshot(data) {
        let again = MetadataImage::from_snapshot(&image.to_snapshot()).expect("re-encoded snapshot reads back");
        assert_eq!(again, image);
    }
});
