//! The typed API's one encoding: MessagePack (`rmp-serde`, structs as maps with field names),
//! so that clients in other languages read and write the same items.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Error, Result};

/// Encodes an item as MessagePack.
///
/// ```
/// let bytes = hydra_queue::codec::encode(&("test_a", 3u32)).unwrap();
/// let back: (String, u32) = hydra_queue::codec::decode(&bytes).unwrap();
/// assert_eq!(back, ("test_a".to_string(), 3));
/// ```
pub fn encode<T: Serialize + ?Sized>(item: &T) -> Result<Bytes> {
    rmp_serde::to_vec_named(item)
        .map(Bytes::from)
        .map_err(|e| Error::Codec {
            action: "encode",
            message: e.to_string(),
        })
}

/// Decodes a MessagePack item.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    rmp_serde::from_slice(bytes).map_err(|e| Error::Codec {
        action: "decode",
        message: e.to_string(),
    })
}
