// `memcpy` and `memset` for the kernel and every EL0 program alike, in place of the
// compiler's (see libos/src/mem.rs for the figures). Both make unaligned `ldp`/`stp`
// accesses when given unaligned pointers, which Normal memory allows with alignment
// checking off (SCTLR_EL1.A and the EL0 equivalent are clear) and Device memory does not:
// neither may be used on device registers or the framebuffer (the drivers use volatile
// accesses there), and code that runs with the MMU off (`mm::early_map`, where all memory
// is Device memory) may only call them with aligned pointers (it zeroes whole tables).
.section .text.memcpy, "ax"
.global memcpy
.type memcpy, %function
.p2align 4
memcpy:
    mov x3, x0
    subs x2, x2, #256
    b.lo 7f
// 256 bytes: six pairs in flight, each pair register stored and then loaded again; the
// pair at offset 0 last, moving both pointers on.
1:  ldp x6, x7, [x1, #16]
    ldp x8, x9, [x1, #32]
    ldp x10, x11, [x1, #48]
    ldp x12, x13, [x1, #64]
    ldp x14, x15, [x1, #80]
    ldp x16, x17, [x1, #96]
    stp x6, x7, [x3, #16]
    ldp x6, x7, [x1, #112]
    stp x8, x9, [x3, #32]
    ldp x8, x9, [x1, #128]
    stp x10, x11, [x3, #48]
    ldp x10, x11, [x1, #144]
    stp x12, x13, [x3, #64]
    ldp x12, x13, [x1, #160]
    stp x14, x15, [x3, #80]
    ldp x14, x15, [x1, #176]
    stp x16, x17, [x3, #96]
    ldp x16, x17, [x1, #192]
    stp x6, x7, [x3, #112]
    ldp x6, x7, [x1, #208]
    stp x8, x9, [x3, #128]
    ldp x8, x9, [x1, #224]
    stp x10, x11, [x3, #144]
    ldp x10, x11, [x1, #240]
    ldp x4, x5, [x1], #256
    stp x12, x13, [x3, #160]
    stp x14, x15, [x3, #176]
    stp x16, x17, [x3, #192]
    stp x6, x7, [x3, #208]
    stp x8, x9, [x3, #224]
    stp x10, x11, [x3, #240]
    stp x4, x5, [x3], #256
    subs x2, x2, #256
    b.hs 1b
7:  adds x2, x2, #192    // what is left, less 64
    b.lo 2f
8:  ldp x6, x7, [x1, #16]
    ldp x8, x9, [x1, #32]
    ldp x10, x11, [x1, #48]
    ldp x4, x5, [x1], #64
    stp x6, x7, [x3, #16]
    stp x8, x9, [x3, #32]
    stp x10, x11, [x3, #48]
    stp x4, x5, [x3], #64
    subs x2, x2, #64
    b.hs 8b
2:  adds x2, x2, #56
    b.lo 4f
3:  ldr x4, [x1], #8
    str x4, [x3], #8
    subs x2, x2, #8
    b.hs 3b
4:  adds x2, x2, #8
    b.eq 6f
5:  ldrb w4, [x1], #1
    strb w4, [x3], #1
    subs x2, x2, #1
    b.ne 5b
6:  ret
.size memcpy, . - memcpy

.section .text.memset, "ax"
.global memset
.type memset, %function
.p2align 4
memset:
    mov x3, x0
    and x1, x1, #0xff
    mov x4, #0x0101010101010101
    mul x4, x4, x1
    subs x2, x2, #64
    b.lo 2f
1:  stp x4, x4, [x3, #16]
    stp x4, x4, [x3, #32]
    stp x4, x4, [x3, #48]
    stp x4, x4, [x3], #64
    subs x2, x2, #64
    b.hs 1b
2:  adds x2, x2, #56
    b.lo 4f
3:  str x4, [x3], #8
    subs x2, x2, #8
    b.hs 3b
4:  adds x2, x2, #8
    b.eq 6f
5:  strb w4, [x3], #1
    subs x2, x2, #1
    b.ne 5b
6:  ret
.size memset, . - memset
