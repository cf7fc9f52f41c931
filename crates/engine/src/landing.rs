//! Where an array received over TCP lands: a warm memfd when the kernel keeps mappings as
//! arrays (Python: the numpy array lives over it, see `mpx_messages::memfd::warm`), else a
//! new array of the kernel's own.
//!
//! Fresh pages cost more than the bytes written into them on this project's VM (80 MB: about
//! 58 ms against 13 ms), and a push over TCP used to make one fresh array per engine: a pooled
//! memfd whose pages are already allocated spares that, and is idle again when the array is
//! freed.

use mpx_messages::{memfd::Mapping, Dtype, RemoteError};

use crate::kernel::{HostArray, Kernel};

/// The memory an array is received into.
pub enum Landing {
    /// A new array of the kernel's.
    Array(Box<dyn HostArray>),
    /// A warm memfd, bound with [`Kernel::bind_mapped`].
    Mapped(Mapping),
}

impl Landing {
    /// Memory for a `dtype` array of `shape`: pooled when the kernel holds mappings and the size
    /// is pooled; the kernel's own array otherwise.
    ///
    /// # Errors
    /// A dtype the kernel refuses (checked on a 0-element array first when pooled), or memory.
    pub fn new(kernel: &mut dyn Kernel, dtype: Dtype, shape: &[usize]) -> Result<Landing, RemoteError> {
        let len = mpx_messages::array::byte_len(dtype, shape);
        if let (true, Some(len)) = (kernel.holds_mappings(), len) {
            if let Some(mapping) = mpx_messages::memfd::warm::receive(len) {
                // The kernel's verdict on the dtype, as for its own array.
                kernel.new_array(dtype, &[0])?;
                return Ok(Landing::Mapped(mapping));
            }
        }
        kernel.new_array(dtype, shape).map(Landing::Array)
    }

    /// The bytes to receive into.
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            Landing::Array(a) => a.bytes_mut(),
            Landing::Mapped(m) => m.as_mut_slice(),
        }
    }

    /// Binds `name` to the received array (`dtype` of `shape`).
    ///
    /// # Errors
    /// As [`Kernel::bind`] and [`Kernel::bind_mapped`].
    pub fn bind(
        self,
        kernel: &mut dyn Kernel,
        name: &str,
        dtype: Dtype,
        shape: &[usize],
    ) -> Result<(), RemoteError> {
        match self {
            Landing::Array(a) => kernel.bind(name, a),
            Landing::Mapped(m) => kernel.bind_mapped(name, dtype, shape, m),
        }
    }
}
