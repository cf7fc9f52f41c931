//! The memfd module's tests.

use super::*;

fn dup(fd: BorrowedFd<'_>) -> OwnedFd {
    fd.try_clone_to_owned().expect("dup")
}

#[test]
fn a_sealed_memfd_is_checked_and_mapped_copy_on_write() {
    let bytes: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
    let sealed = SealedMemfd::copy_of("t", &bytes).unwrap();
    let received = SealedMemfd::check(dup(sealed.fd()), bytes.len() as u64).unwrap();
    let mut private = received.map_private().unwrap();
    assert_eq!(private.as_slice(), &bytes[..]);
    private.as_mut_slice()[0] = 99;
    // The write stays in the private view.
    assert_eq!(received.map_shared().unwrap().as_slice(), &bytes[..]);
    assert_eq!(private.as_slice()[0], 99);
}

#[test]
fn a_wrong_size_or_not_a_memfd_or_an_unsealed_memfd_is_refused() {
    let sealed = SealedMemfd::copy_of("t", &[1, 2, 3]).unwrap();
    assert!(matches!(
        SealedMemfd::check(dup(sealed.fd()), 4),
        Err(MemfdError::WrongSize { expected: 4, actual: 3 })
    ));
    let file = std::fs::File::open("/proc/self/status").unwrap();
    assert!(matches!(SealedMemfd::check(OwnedFd::from(file), 3), Err(MemfdError::NotMemfd)));
    let unsealed = MemfdWriter::create("t", 3).unwrap();
    assert!(matches!(SealedMemfd::check(dup(unsealed.fd.as_fd()), 3), Err(MemfdError::Unsealed(_))));
}

#[test]
fn a_sealed_memfd_cannot_be_written_or_resized() {
    let sealed = SealedMemfd::copy_of("t", &[7; 4096]).unwrap();
    let file = std::fs::File::from(dup(sealed.fd()));
    assert!(std::os::unix::fs::FileExt::write_at(&file, &[1], 0).is_err());
    assert!(file.set_len(1).is_err());
    assert!(file.set_len(8192).is_err());
    // Nor mapped shared and writable.
    assert!(Mapping::new(
        sealed.fd(),
        0,
        4096,
        ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
        MapFlags::MAP_SHARED
    )
    .is_err());
}

#[test]
fn a_range_maps_from_inside_a_page() {
    let bytes: Vec<u8> = (0..20_000u32).map(|i| (i % 253) as u8).collect();
    let sealed = SealedMemfd::copy_of("t", &bytes).unwrap();
    for (offset, len) in [(0, 100), (4095, 2), (4096, 4096), (5000, 15_000), (12_345, 0)] {
        let mut view = sealed.map_private_range(offset, len).unwrap();
        assert_eq!(view.as_slice(), &bytes[offset..offset + len], "{offset}+{len}");
        if len > 0 {
            view.as_mut_slice()[0] ^= 1;
        }
    }
    assert_eq!(sealed.map_shared().unwrap().as_slice(), &bytes[..]);
    assert!(matches!(sealed.map_private_range(19_999, 2), Err(MemfdError::WrongSize { .. })));
    assert!(matches!(sealed.map_private_range(usize::MAX, 2), Err(MemfdError::WrongSize { .. })));
}

#[test]
fn empty_arrays_need_no_mapping() {
    let sealed = SealedMemfd::copy_of("t", &[]).unwrap();
    let checked = SealedMemfd::check(dup(sealed.fd()), 0).unwrap();
    assert!(checked.map_private().unwrap().as_slice().is_empty());
}

fn inode(fd: BorrowedFd<'_>) -> u64 {
    fstat(fd).expect("fstat").st_ino
}

#[test]
fn an_unwritten_mapping_travels_again_as_its_own_memfd() {
    let bytes: Vec<u8> = (0..3 * 4096 + 17).map(|i| (i % 253) as u8).collect();
    let sealed = SealedMemfd::copy_of("t", &bytes).unwrap();
    let received = SealedMemfd::check(dup(sealed.fd()), bytes.len() as u64).unwrap();
    let mut private = received.map_private().unwrap();
    // Read every page: still the memfd's pages.
    assert_eq!(private.as_slice(), &bytes[..]);
    let again = origin::unchanged(private.as_slice()).expect("an unwritten mapping is its memfd");
    assert_eq!(inode(again.fd()), inode(sealed.fd()));
    // Not a part of it, nor a copy of its bytes elsewhere.
    assert!(origin::unchanged(&private.as_slice()[1..]).is_none());
    assert!(origin::unchanged(&bytes).is_none());
    // One written byte: its page is the process's own now, the array must be copied.
    private.as_mut_slice()[2 * 4096 + 5] ^= 1;
    assert!(origin::unchanged(private.as_slice()).is_none());
    // A shared (read-only) mapping is always the memfd's bytes.
    let shared = received.map_shared().unwrap();
    let same = origin::unchanged(shared.as_slice()).expect("a shared mapping is its memfd");
    assert_eq!(inode(same.fd()), inode(sealed.fd()));
    // Unmapped: forgotten.
    let addr = shared.as_ptr() as usize;
    drop(shared);
    assert!(origin::registered_at(addr).is_none());
}

#[test]
fn a_plain_offer_takes_writes_in_place_and_refuses_what_does_not_match() {
    use held::{open_plain_writable, plain_offer, HeldWriter, Offer};
    let len = 3 * page_size() + 5;
    let mut w = MemfdWriter::create_cold("plain", len).unwrap();
    let offer = plain_offer(&w).unwrap();
    assert_eq!(offer.len, len as u64);
    // Two writers' parts, one across a page boundary, land in the creator's bytes.
    let mut a = open_plain_writable(&offer, 0..10).unwrap();
    let mut b = open_plain_writable(&offer, page_size() - 3..len).unwrap();
    a.as_mut_slice().fill(1);
    b.as_mut_slice().fill(2);
    drop((a, b));
    let bytes = w.bytes();
    assert!(bytes[..10].iter().all(|&x| x == 1) && bytes[10..page_size() - 3].iter().all(|&x| x == 0));
    assert!(bytes[page_size() - 3..].iter().all(|&x| x == 2));
    // Empty parts map nothing; parts past the end, other sizes and other files are refused.
    assert_eq!(open_plain_writable(&offer, 4..4).unwrap().len(), 0);
    assert!(matches!(open_plain_writable(&offer, 0..len + 1), Err(MemfdError::WrongSize { .. })));
    let longer = Offer { len: offer.len + 1, ..offer };
    assert!(matches!(open_plain_writable(&longer, 0..1), Err(MemfdError::WrongSize { .. })));
    let other = Offer { ino: offer.ino + 1, ..offer };
    assert!(matches!(open_plain_writable(&other, 0..1), Err(MemfdError::NotMemfd)));
    // A held memfd (its holder page after the bytes) is not a plain one of its array's size.
    let held = HeldWriter::create(page_size()).unwrap();
    assert!(matches!(open_plain_writable(&held.offer(), 0..1), Err(MemfdError::WrongSize { .. })));
    // Once every writer has unmapped, the creator can seal it.
    assert!(w.seal().is_ok());
}
