//! A call's out-of-band return ([`CallReturn`]) laid out as the reply's buffers: the payload in
//! buffer 0, then each array in a buffer of its own (its bytes as the kernel gave them, no
//! copy), except that past [`MAX_OWN`] arrays the smallest share one last buffer (copied in,
//! each at a 16-byte aligned offset), since a frame holds at most 1,024 buffers.
//!
//! The whole reply is one frame (never streamed in chunks as a large pull is), so its bytes
//! must fit one: past [`MAX_BYTES`] the call fails with a [`TOO_LARGE`] error saying so.

use bytes::{Bytes, BytesMut};
use mpx_messages::{RemoteError, Returned, ReturnedArray, DEFAULT_MAX_FRAME};

use super::CallReturn;

/// Most arrays with a buffer of their own (the frame's 1,024 buffers, less the payload's, the
/// shared one's and some room).
pub const MAX_OWN: usize = 1000;

/// Most bytes of payload and arrays in one reply: a frame's, less room for its header.
pub const MAX_BYTES: usize = DEFAULT_MAX_FRAME - (1 << 20);

/// The `ename` of a return too large for one reply.
pub const TOO_LARGE: &str = "ResultTooLarge";

/// Alignment of the arrays in the shared buffer (numpy reads any, but aligned is faster).
const ALIGN: usize = 16;

/// The wire description of `ret` and the reply's buffers, within the limits above.
///
/// # Errors
/// A [`TOO_LARGE`] error when the payload and arrays exceed [`MAX_BYTES`].
pub fn lay_out(ret: CallReturn) -> Result<(Returned, Vec<Bytes>), RemoteError> {
    lay_out_within(ret, MAX_BYTES, MAX_OWN)
}

/// [`lay_out`] with the limits as arguments (tests use small ones).
fn lay_out_within(
    ret: CallReturn,
    max_bytes: usize,
    max_own: usize,
) -> Result<(Returned, Vec<Bytes>), RemoteError> {
    // The arrays that get a buffer of their own: all, or the `max_own` largest.
    let mut own = vec![true; ret.arrays.len()];
    if ret.arrays.len() > max_own {
        let mut by_size: Vec<usize> = (0..ret.arrays.len()).collect();
        by_size.sort_by_key(|&i| std::cmp::Reverse(ret.arrays[i].data().len()));
        for &i in &by_size[max_own..] {
            own[i] = false;
        }
    }
    let shared_len = ret
        .arrays
        .iter()
        .zip(&own)
        .filter(|(_, &o)| !o)
        .fold(0usize, |end, (a, _)| end.next_multiple_of(ALIGN) + a.data().len());
    let own_len: usize = ret.arrays.iter().zip(&own).filter(|(_, &o)| o).map(|(a, _)| a.data().len()).sum();
    let total = ret.payload.len() + own_len + shared_len;
    if total > max_bytes {
        return Err(RemoteError::new(
            TOO_LARGE,
            format!(
                "the call's result takes {total} bytes ({} arrays), more than one reply holds \
                 ({max_bytes} bytes): bind it to a name on the engines and pull or gather the \
                 arrays themselves",
                ret.arrays.len()
            ),
        ));
    }
    let mut buffers = vec![ret.payload];
    let shared_index = 1 + own.iter().filter(|&&o| o).count();
    let mut shared = BytesMut::with_capacity(shared_len);
    let mut arrays = Vec::with_capacity(ret.arrays.len());
    for (a, own) in ret.arrays.into_iter().zip(own) {
        let (dtype, shape, data) = a.into_parts();
        let (buffer, offset) = if own {
            buffers.push(data);
            (buffers.len() - 1, 0)
        } else {
            shared.resize(shared.len().next_multiple_of(ALIGN), 0);
            let offset = shared.len();
            shared.extend_from_slice(&data);
            (shared_index, offset)
        };
        arrays.push(ReturnedArray { dtype, shape, buffer, offset });
    }
    if arrays.iter().any(|a| a.buffer == shared_index) {
        buffers.push(shared.freeze());
    }
    Ok((Returned { payload: 0, arrays }, buffers))
}

#[cfg(test)]
mod tests {
    use mpx_messages::{Dtype, RawArray};

    use super::*;

    fn array(n: usize) -> RawArray {
        RawArray::new(Dtype::U8, vec![n], Bytes::from(vec![n as u8; n])).expect("valid")
    }

    fn ret(sizes: &[usize]) -> CallReturn {
        CallReturn {
            payload: Bytes::from_static(b"pickle"),
            arrays: sizes.iter().map(|&n| array(n)).collect(),
        }
    }

    /// The bytes of each array as the receiver finds them.
    fn read(returned: &Returned, buffers: &[Bytes]) -> Vec<Vec<u8>> {
        returned
            .arrays
            .iter()
            .map(|a| {
                let n = a.shape.iter().product::<usize>();
                buffers[a.buffer][a.offset..a.offset + n].to_vec()
            })
            .collect()
    }

    #[test]
    fn each_array_gets_its_own_buffer_without_a_copy() {
        let r = ret(&[3, 0, 5]);
        let addresses: Vec<_> = r.arrays.iter().map(|a| a.data().as_ptr()).collect();
        let (returned, buffers) = lay_out_within(r, 100, 10).expect("fits");
        assert_eq!(returned.payload, 0);
        assert_eq!(&buffers[0][..], b"pickle");
        assert_eq!(
            returned.arrays.iter().map(|a| (a.buffer, a.offset)).collect::<Vec<_>>(),
            [(1, 0), (2, 0), (3, 0)]
        );
        assert_eq!(buffers.len(), 4);
        for (a, addr) in returned.arrays.iter().zip(addresses) {
            assert_eq!(buffers[a.buffer].as_ptr(), addr, "shared, not copied");
        }
        assert_eq!(read(&returned, &buffers), [vec![3; 3], vec![], vec![5; 5]]);
    }

    #[test]
    fn past_the_limit_the_smallest_arrays_share_one_aligned_buffer() {
        let (returned, buffers) = lay_out_within(ret(&[1, 40, 3, 30, 2]), 1000, 2).expect("fits");
        // The two largest (40, 30) keep their own; 1, 3 and 2 go, in order, to the last.
        let places: Vec<_> = returned.arrays.iter().map(|a| (a.buffer, a.offset)).collect();
        assert_eq!(places, [(3, 0), (1, 0), (3, 16), (2, 0), (3, 32)]);
        assert_eq!(buffers.len(), 4);
        assert_eq!(read(&returned, &buffers), [vec![1], vec![40; 40], vec![3; 3], vec![30; 30], vec![2; 2]]);
    }

    #[test]
    fn a_return_larger_than_a_reply_is_refused() {
        let e = lay_out_within(ret(&[50, 50]), 100, 10).expect_err("too large");
        assert_eq!(e.ename, TOO_LARGE);
        assert!(e.evalue.contains("106 bytes (2 arrays)"), "{}", e.evalue);
        assert!(lay_out_within(ret(&[47, 47]), 100, 10).is_ok());
    }
}
