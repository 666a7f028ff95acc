// exo boot: the arm64 Image header and everything that runs before the MMU is on.
//
// Loaders put the image at different physical addresses (QEMU virt: RAM base + text_offset;
// QEMU raspi4b and the Pi firmware: 0x80000 or per config.txt), so until the MMU is on only
// PC-relative addressing (adr/adrp) is used. Core 0 drops from EL2 to EL1 when needed, zeroes
// BSS, asks `early_map` (Rust, PC-relative too) for two table trees -- the image at its link
// address in TTBR1, and an identity map of the image and DTB in TTBR0 for the switch-over --
// turns the MMU on and jumps to the high half. Other cores park until `secondary_entry`.

// SCTLR_EL1 with the MMU and caches off: only the bits ARMv8.0 makes RES1 (EOS, TSCXT, EIS,
// SPAN, nTLSMD, LSMAOE in later versions), which aarch64-cpu does not name.
.equ SCTLR_EL1_RES1, (1 << 11) | (1 << 20) | (1 << 22) | (1 << 23) | (1 << 28) | (1 << 29)

// EL2 (QEMU raspi4b, the Pi firmware's armstub): set EL1 up and drop into it, at \target.
.macro EL2_TO_EL1 target
    mov     x1, #(1 << 31)              // HCR_EL2.RW: EL1 is AArch64; nothing trapped
    msr     hcr_el2, x1
    mov     x1, #3                      // CNTHCTL_EL2: EL1 may use the physical counter/timer
    msr     cnthctl_el2, x1
    msr     cntvoff_el2, xzr            // virtual counter == physical counter
    mov     x1, #0x33ff                 // CPTR_EL2: RES1 bits only, FP not trapped to EL2
    msr     cptr_el2, x1
    msr     hstr_el2, xzr
    mrs     x1, pmcr_el0                // MDCR_EL2.HPMN = PMCR_EL0.N: EL1 sees every counter
    ubfx    x1, x1, #11, #5
    msr     mdcr_el2, x1
    mrs     x1, id_aa64pfr0_el1         // GICv3 system registers usable from EL1, if present
    ubfx    x1, x1, #24, #4
    cbz     x1, 9f
    mov     x1, #0x9                    // ICC_SRE_EL2: SRE | Enable
    msr     S3_4_C12_C9_5, x1
9:  ldr     x1, =SCTLR_EL1_RES1         // SCTLR_EL1: MMU and caches off
    msr     sctlr_el1, x1
    mov     x1, #0x3c5                  // SPSR_EL2: EL1h, DAIF masked
    msr     spsr_el2, x1
    adr     x1, \target
    msr     elr_el2, x1
    eret

.endm

.macro CORE_INDEX tmp                 // TPIDRRO_EL0 = this core's index (`smp::cpu`),
    mrs     \tmp, mpidr_el1             // read by the vectors' `LOCK` (EL0 may read it too:
    and     \tmp, \tmp, #3              // which core it runs on is public, `EnvInfo::cpu`)
    msr     tpidrro_el0, \tmp
.endm

.section .text.boot, "ax"
.global _start
_start:
    b       primary_entry               // code0
    .long   0                           // code1
    .quad   0x80000                     // text_offset
    .quad   __image_size                // image_size: bss and stack included
    .quad   0xa                         // flags: LE, 4 KiB pages, anywhere in RAM
    .quad   0, 0, 0                     // res2, res3, res4
    .ascii  "ARM\x64"                   // magic
    .long   0                           // res5

primary_entry:
    mov     x19, x0                     // DTB physical address, if the loader gave one
    adr     x20, _start                 // physical load address
    mrs     x1, mpidr_el1
    and     x1, x1, #0xff
    cbnz    x1, park                    // other cores wait until arch/smp.rs starts them
    mrs     x21, CurrentEL
    lsr     x21, x21, #2                // entry exception level, reported in the boot log
    cmp     x21, #2
    b.ne    at_el1

    EL2_TO_EL1 at_el1

at_el1:
    cmp     x21, #1
    b.lo    park                        // EL0 cannot happen; EL3 is not supported
    cmp     x21, #2
    b.hi    park
    mov     x1, #{FP_OFF}               // EL0's FP/SIMD access off (`arch::FpState`)
    msr     cpacr_el1, x1
    ldr     x1, =SCTLR_EL1_RES1
    msr     sctlr_el1, x1
    isb
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
2:  cmp     x1, x2
    b.hs    3f
    stp     xzr, xzr, [x1], #16
    b       2b
3:  mov     x0, x20
    mov     x1, x19
    bl      early_map                   // -> x0 = TTBR1 root, x1 = TTBR0 identity root
    cbz     x0, park
    adrp    x2, secondary_boot          // kept for the other cores' own switch-over
    add     x2, x2, :lo12:secondary_boot
    stp     x0, x1, [x2]

    // The tables were written with the caches off: drop any stale lines over them.
    adrp    x2, __bss_start
    add     x2, x2, :lo12:__bss_start
    adrp    x3, __bss_end
    add     x3, x3, :lo12:__bss_end
    mrs     x4, ctr_el0
    ubfx    x4, x4, #16, #4             // DminLine: log2(words) of the smallest D-cache line
    mov     x5, #4
    lsl     x5, x5, x4
    sub     x6, x5, #1
    bic     x2, x2, x6
4:  dc      ivac, x2
    add     x2, x2, x5
    cmp     x2, x3
    b.lo    4b
    dsb     sy

    ldr     x2, =0x44ff04               // MAIR_EL1: 0 Device-nGnRE, 1 Normal WB, 2 Normal NC
    msr     mair_el1, x2
    // TCR_EL1: BOOT_TCR in arch/mod.rs, named with aarch64-cpu's fields.
    ldr     x2, ={BOOT_TCR}
    mrs     x3, id_aa64mmfr0_el1
    and     x3, x3, #7                  // PARange -> IPS
    cmp     x3, #5
    mov     x4, #5
    csel    x3, x3, x4, ls              // at most 48 bits
    orr     x2, x2, x3, lsl #32
    msr     tcr_el1, x2
    msr     ttbr0_el1, x1
    msr     ttbr1_el1, x0
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    mrs     x2, sctlr_el1
    mov     x3, #{MMU_ON}                // SCTLR_EL1: M, C, I
    orr     x2, x2, x3
    msr     sctlr_el1, x2
    isb
    ldr     x2, =high_entry
    br      x2

high_entry:
    ldr     x1, =__stack_top
    mov     sp, x1
    CORE_INDEX x1
    ldr     x1, =exception_vectors
    msr     vbar_el1, x1
    isb
    mov     x0, x19
    mov     x1, x20
    mov     x2, x21
    mov     x29, xzr                    // the backtrace ends here
    mov     x30, xzr
    bl      kmain

// The other cores start here (arch/smp.rs starts them one at a time, through PSCI at EL1 or
// the spin table at EL2), MMU off. `secondary_boot` holds what core 0 set up: the TTBR1
// root, the boot identity map, TCR_EL1 and this core's stack top (a high-half address);
// core 0 cleaned it to memory, which is what is read with the caches off.
.global secondary_entry
secondary_entry:
    mrs     x21, CurrentEL
    lsr     x21, x21, #2
    cmp     x21, #2
    b.ne    secondary_el1
    EL2_TO_EL1 secondary_el1
secondary_el1:
    mov     x1, #{FP_OFF}
    msr     cpacr_el1, x1
    ldr     x1, =SCTLR_EL1_RES1
    msr     sctlr_el1, x1
    isb
    adrp    x9, secondary_boot
    add     x9, x9, :lo12:secondary_boot
    ldp     x0, x1, [x9]
    ldp     x2, x3, [x9, #16]
    ldr     x4, =0x44ff04               // MAIR_EL1, as on core 0
    msr     mair_el1, x4
    msr     tcr_el1, x2
    msr     ttbr0_el1, x1
    msr     ttbr1_el1, x0
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    mrs     x4, sctlr_el1
    mov     x5, #{MMU_ON}
    orr     x4, x4, x5
    msr     sctlr_el1, x4
    isb
    ldr     x4, =secondary_high
    br      x4
secondary_high:
    mov     sp, x3
    CORE_INDEX x1
    ldr     x1, =exception_vectors
    msr     vbar_el1, x1
    isb
    mov     x29, xzr
    mov     x30, xzr
    bl      secondary_main

.section .bss
.balign 64
.global secondary_boot
secondary_boot:
    .skip   64

.section .text.boot, "ax"
.global park
park:
    wfe
    b       park
