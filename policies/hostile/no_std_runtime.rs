//! The least a `no_std` component needs (wasm32 only): a global allocator, a panic handler
//! and the canonical ABI's `cabi_realloc` (wit-bindgen's weak one does not survive LTO in a
//! `no_std` build, so the component must export its own, as the SDK does).
//!
//! The allocator bumps through pages taken with `memory.grow` and never frees: the host
//! throws every instance away after one call.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::Cell;
use core::ptr;

const PAGE_SIZE: usize = 65_536;

struct Bump {
    next: Cell<usize>,
    end: Cell<usize>,
}

// SAFETY: a component instance is single-threaded.
unsafe impl Sync for Bump {}

#[global_allocator]
static ALLOCATOR: Bump = Bump { next: Cell::new(0), end: Cell::new(0) };

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let align = layout.align();
        let size = layout.size();
        let fits = |next: usize| {
            let start = next.checked_add(align - 1)? & !(align - 1);
            let end = start.checked_add(size)?;
            Some((start, end))
        };
        match fits(self.next.get()) {
            Some((start, end)) if self.end.get() != 0 && end <= self.end.get() => {
                self.next.set(end);
                start as *mut u8
            }
            _ => {
                let Some(needed) = size.checked_add(align) else { return ptr::null_mut() };
                let pages = needed.div_ceil(PAGE_SIZE);
                let previous = wasm32::memory_grow(0, pages);
                if previous == usize::MAX {
                    return ptr::null_mut();
                }
                let base = previous * PAGE_SIZE;
                self.end.set(base + pages * PAGE_SIZE);
                match fits(base) {
                    Some((start, end)) => {
                        self.next.set(end);
                        start as *mut u8
                    }
                    None => ptr::null_mut(),
                }
            }
        }
    }

    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

/// A panic traps.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    wasm32::unreachable()
}

/// The canonical ABI's allocator, through the global allocator; traps when memory runs out.
///
/// # Safety
/// Called by the host per the canonical ABI: `old_ptr`/`old_len`/`align` describe an earlier
/// allocation from this function (or `old_len` is 0) and `align` is a power of two.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(old_ptr: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    if new_len == 0 {
        return align as *mut u8;
    }
    // SAFETY: the caller guarantees a power-of-two `align`; `new_len` is non-zero.
    let ptr = unsafe {
        let layout = Layout::from_size_align_unchecked(new_len, align);
        let ptr = ALLOCATOR.alloc(layout);
        if !ptr.is_null() && old_len != 0 {
            ptr::copy_nonoverlapping(old_ptr, ptr, old_len.min(new_len));
        }
        ptr
    };
    if ptr.is_null() {
        wasm32::unreachable();
    }
    ptr
}
