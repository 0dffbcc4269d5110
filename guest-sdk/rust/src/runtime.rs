//! What a `no_std` component needs from its runtime that `std` would otherwise provide
//! (wasm32 only): a panic handler, the canonical ABI's `cabi_realloc`, and `memcmp`.

use core::alloc::Layout;
use core::arch::wasm32;

/// A panic traps. The host turns a trap into a fail-closed deny that names the policy, and
/// the instance is discarded, so there is nothing to unwind and no message worth the code
/// that formatting it would pull in.
#[cfg(feature = "panic-handler")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    wasm32::unreachable()
}

/// The canonical ABI's allocator: the host calls it to place strings and lists (the request,
/// the settings) in the guest's memory. On `wasm32-wasip2`, `std` supplies it through
/// wasi-libc; without `std` the component must export its own. It allocates from the
/// global (bump) allocator and traps when memory is exhausted.
///
/// The host calls it first for every call's arguments, so it is also where the allocator
/// starts over once the previous call has finished (see `arena`); the host also calls it
/// during import calls that return strings or lists, where no call has finished.
///
/// # Safety
/// Called by the host per the canonical ABI: `old_ptr`/`old_len`/`align` describe an earlier
/// allocation from this function (or `old_len` is 0) and `align` is a power of two.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(old_ptr: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    crate::arena::begin_call();
    let ptr = unsafe {
        if old_len == 0 {
            if new_len == 0 {
                return align as *mut u8;
            }
            alloc::alloc::alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            let layout = Layout::from_size_align_unchecked(old_len, align);
            alloc::alloc::realloc(old_ptr, layout, new_len)
        }
    };
    if ptr.is_null() {
        wasm32::unreachable();
    }
    ptr
}

/// `memcmp`, which LLVM emits calls to for slice and string comparisons at `opt-level`
/// `s`/`z`. `std` gets it from wasi-libc; `compiler_builtins` does not provide it for this
/// target.
///
/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// `bcmp`: `memcmp` when only equality matters (LLVM emits it for `==` on byte slices).
///
/// # Safety
/// `a` and `b` must be valid for reads of `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    unsafe { memcmp(a, b, n) }
}
