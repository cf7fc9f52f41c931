//! [`ReturnedData`]: what an apply's function returned out of band (the Python client's
//! helper: its result pickled, the numpy arrays in it apart), decoded from a reply's buffers.

use bytes::Bytes;
use mpx_messages::{MpxError, Outcome, RawArray};

/// The payload and arrays of an [`Outcome::returned`], over the reply frame's own bytes (no
/// copy), each array checked against its dtype and shape.
#[derive(Debug, Clone, PartialEq)]
pub struct ReturnedData {
    /// The payload (for the Python client, the result's pickle).
    pub payload: Bytes,
    /// The arrays, in the payload's order.
    pub arrays: Vec<RawArray>,
}

/// Decodes what an outcome returned out of band; a bad description becomes the outcome's
/// error (a [`MpxError::Decode`]).
pub(crate) fn decode_returned(outcome: &mut Outcome, buffers: &[Bytes]) -> Option<ReturnedData> {
    let returned = outcome.returned.as_ref()?;
    let decoded = buffers
        .get(returned.payload)
        .ok_or_else(|| format!("payload buffer {} is missing ({} buffers)", returned.payload, buffers.len()))
        .and_then(|payload| {
            let arrays = returned.arrays.iter().map(|a| RawArray::from_returned(a, buffers));
            let arrays = arrays.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
            Ok(ReturnedData { payload: payload.clone(), arrays })
        });
    match decoded {
        Ok(data) => Some(data),
        Err(why) => {
            outcome.error = Some(MpxError::decode(format!("bad returned value: {why}")));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use mpx_messages::{Dtype, Returned, ReturnedArray};

    use super::*;

    fn outcome(payload: usize, arrays: Vec<ReturnedArray>) -> Outcome {
        Outcome { returned: Some(Returned { payload, arrays }), ..Default::default() }
    }

    #[test]
    fn payload_and_arrays_come_from_the_buffers() {
        let buffers = vec![Bytes::from_static(b"pickle"), Bytes::from(vec![1u8, 0, 1, 7, 7])];
        let arrays = vec![
            ReturnedArray { dtype: Dtype::Bool, shape: vec![3], buffer: 1, offset: 0 },
            ReturnedArray { dtype: Dtype::U8, shape: vec![2], buffer: 1, offset: 3 },
        ];
        let mut o = outcome(0, arrays);
        let data = decode_returned(&mut o, &buffers).expect("decoded");
        assert_eq!(o.error, None);
        assert_eq!(&data.payload[..], b"pickle");
        assert_eq!(
            data.arrays.iter().map(|a| a.data().to_vec()).collect::<Vec<_>>(),
            [vec![1, 0, 1], vec![7, 7]]
        );
        assert_eq!(decode_returned(&mut Outcome::default(), &buffers), None);
    }

    #[test]
    fn a_bad_description_is_the_outcome_error() {
        let buffers = vec![Bytes::from_static(b"pickle")];
        let mut o = outcome(1, vec![]);
        assert_eq!(decode_returned(&mut o, &buffers), None);
        assert!(matches!(&o.error, Some(MpxError::Decode { reason }) if reason.contains("payload buffer 1")));
        let bad = ReturnedArray { dtype: Dtype::Bool, shape: vec![6], buffer: 0, offset: 0 };
        let mut o = outcome(0, vec![bad]);
        assert_eq!(decode_returned(&mut o, &buffers), None);
        assert!(
            matches!(&o.error, Some(MpxError::Decode { reason }) if reason.contains("not a bool")),
            "{o:?}"
        );
    }
}
