fn main() {
    use memory_buffers::*;
    let target = main as usize;
    let s = BufferSearchSettings::from_proximity(0x7fff_0000, target, 64);
    let mut b = Buffers::get_buffer(&s).unwrap();
    let a = b.append_bytes(&[1, 2, 3]).unwrap();
    println!("{target:#x} {a:#x} {:?} {:?}", Buffers::locator_kind(), b);
    let p = Buffers::allocate_private_memory(&BufferAllocatorSettings::from_proximity(0x7fff_0000, target, 4096)).unwrap();
    println!("{p:?}");
}
