//! Prometheus remote write 1.0 on the wire: the four protobuf messages of `remote.proto` (the
//! `metadata` field left out), a batch encoded and compressed as the snappy block format.

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;

use super::queue::{Sample, Series};

/// The NaN that Prometheus reads as "this series ended": a staleness marker.
pub const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

pub fn stale() -> f64 {
    f64::from_bits(STALE_NAN)
}

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<WireSample>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct WireSample {
    #[prost(double, tag = "1")]
    pub value: f64,
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// The request body for `batch`: one time series per series, its samples in the batch's order
/// (which is time order, the queue being first in, first out), protobuf then snappy.
pub fn encode(batch: &[Sample]) -> Vec<u8> {
    let mut index: HashMap<*const Series, usize> = HashMap::new();
    let mut request = WriteRequest::default();
    for sample in batch {
        let i = *index.entry(Arc::as_ptr(&sample.series)).or_insert_with(|| {
            request.timeseries.push(TimeSeries {
                labels: sample
                    .series
                    .iter()
                    .map(|(name, value)| Label {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                samples: Vec::new(),
            });
            request.timeseries.len() - 1
        });
        request.timeseries[i].samples.push(WireSample {
            value: sample.value,
            timestamp: sample.timestamp_ms,
        });
    }
    let protobuf = request.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&protobuf)
        .expect("snappy takes any input below 4 GiB, and a batch is far smaller")
}

/// The request a body encodes: for tests, and the fuzz-free check that `encode` round-trips.
#[cfg(test)]
pub fn decode(body: &[u8]) -> WriteRequest {
    let protobuf = snap::raw::Decoder::new().decompress_vec(body).unwrap();
    WriteRequest::decode(protobuf.as_slice()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, target: &str) -> Arc<Series> {
        Arc::from(vec![
            ("__name__".to_string(), name.to_string()),
            ("target".to_string(), target.to_string()),
        ])
    }

    #[test]
    fn a_batch_groups_samples_by_series_in_time_order() {
        let (a, b) = (series("probe_success", "a"), series("probe_success", "b"));
        let batch = vec![
            Sample::new(&a, 1000, 1.0),
            Sample::new(&b, 1000, 0.0),
            Sample::new(&a, 2000, 0.0),
            Sample::new(&a, 3000, stale()),
        ];
        let request = decode(&encode(&batch));
        assert_eq!(request.timeseries.len(), 2);
        let first = &request.timeseries[0];
        assert_eq!(first.labels[0].name, "__name__");
        assert_eq!(first.labels[1].value, "a");
        let times: Vec<i64> = first.samples.iter().map(|s| s.timestamp).collect();
        assert_eq!(times, [1000, 2000, 3000]);
        assert_eq!(
            first.samples[2].value.to_bits(),
            STALE_NAN,
            "the marker's bits survive"
        );
        assert_eq!(request.timeseries[1].samples[0].value, 0.0);
    }

    #[test]
    fn the_body_is_the_snappy_block_format_of_the_protobuf() {
        let a = series("probe_success", "a");
        let body = encode(&[Sample::new(&a, 5, 1.0)]);
        // The framed (stream) format starts with the stream identifier chunk; the block
        // format starts with the uncompressed length as a varint.
        assert_ne!(body[0], 0xff, "not the framed format");
        let protobuf = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert_eq!(
            snap::raw::decompress_len(&body).unwrap(),
            protobuf.len(),
            "the block format's length prefix"
        );
        // WriteRequest field 1 (a message): tag byte 0x0a.
        assert_eq!(protobuf[0], 0x0a);
    }
}
