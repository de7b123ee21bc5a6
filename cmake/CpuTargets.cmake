# The CPU pass's SIMD targets for the architecture being built: sources and per-file ISA flags.
# Shared by the Python module (CMakeLists.txt) and the native test driver (tests/native/).
set(GRADPROBE_CPU_DIR "${CMAKE_CURRENT_LIST_DIR}/../csrc/cpu")

function(gradprobe_cpu_target_sources out)
  set(dir "${GRADPROBE_CPU_DIR}")
  set(sources "${dir}/cpu_dispatch.cpp" "${dir}/exact_kernels.cpp")
  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
    list(APPEND sources "${dir}/target_sse2.cpp" "${dir}/target_sse4.cpp" "${dir}/target_avx2.cpp"
         "${dir}/target_avx512.cpp")
    # -fno-lto: each target's object code is fixed at compile time with its own flags; link-time
    # optimisation can neither re-target nor merge it with another target's.
    set_source_files_properties("${dir}/target_sse2.cpp" PROPERTIES COMPILE_OPTIONS "-fno-lto")
    set_source_files_properties("${dir}/target_sse4.cpp" PROPERTIES COMPILE_OPTIONS "-fno-lto;-msse4.2;-mpopcnt")
    set_source_files_properties("${dir}/target_avx2.cpp" PROPERTIES COMPILE_OPTIONS "-fno-lto;-mavx2;-mfma;-mf16c")
    set_source_files_properties("${dir}/target_avx512.cpp" PROPERTIES
                                COMPILE_OPTIONS "-fno-lto;-mavx512f;-mavx512bw;-mavx512dq;-mavx512vl")
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
    list(APPEND sources "${dir}/target_neon.cpp" "${dir}/target_sve256.cpp")
    set_source_files_properties("${dir}/target_neon.cpp" PROPERTIES COMPILE_OPTIONS "-fno-lto")
    set_source_files_properties("${dir}/target_sve256.cpp" PROPERTIES
                                COMPILE_OPTIONS "-fno-lto;-march=armv8.2-a+sve;-msve-vector-bits=256")
  else()
    list(APPEND sources "${dir}/target_generic.cpp")
  endif()
  set(${out} "${sources}" PARENT_SCOPE)
endfunction()
