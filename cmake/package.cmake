# Debian packages: `cpack -G DEB` in the build folder writes two, the Debian way:
#   augflow         the command, its man page and bash completion, the guide (README, docs/);
#                   Depends computed from the binary by dpkg-shlibdeps (package dpkg-dev)
#   libaugflow-dev  the static libraries, headers and CMake package; Depends: the -dev packages
#                   of what the CMake package finds (cmake/augflowConfig.cmake.in)
# A package for other machines must be built with -DAUGFLOW_NATIVE=OFF.
set(CPACK_PACKAGE_NAME augflow)
set(CPACK_PACKAGE_VENDOR "augflow")
set(CPACK_PACKAGE_CONTACT "augflow maintainers <augflow@example.org>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "train, evaluate and run image classifiers on CPU machines")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime dev)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION science)

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME augflow)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION "train, evaluate and run image classifiers on CPU machines
 augflow streams augmented images from folders, list files or Fashion-MNIST through a
 oneTBB flow graph into convolutional networks and ResNets, evaluates and searches them,
 labels new images and exports ONNX. This package holds the augflow command.")

set(CPACK_DEBIAN_DEV_PACKAGE_NAME libaugflow-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS
  "libopencv-core-dev (>= 4.6), libopencv-imgproc-dev (>= 4.6), libopencv-imgcodecs-dev (>= 4.6), libtbb-dev (>= 2021), libeigen3-dev (>= 3.4), nlohmann-json3-dev (>= 3), libjpeg-dev, zlib1g-dev, libonnx-dev, libprotobuf-dev")
if(AUGFLOW_WITH_MPI)
  string(APPEND CPACK_DEBIAN_DEV_PACKAGE_DEPENDS ", libopenmpi-dev")
endif()
if(AUGFLOW_WITH_DNNL)
  string(APPEND CPACK_DEBIAN_DEV_PACKAGE_DEPENDS ", libdnnl-dev")
endif()
set(CPACK_DEBIAN_DEV_DESCRIPTION "augflow's libraries for C++ programs
 The static libraries, public headers and CMake package (find_package(augflow)) of augflow:
 augflow::augment (decoding and augmentation, OpenCV only), augflow::loader (the streaming
 loader), augflow::model and augflow::pipeline (training, evaluation, prediction).")

if(AUGFLOW_NATIVE)
  message(STATUS "augflow: AUGFLOW_NATIVE is ON: packages made from this build run only on CPUs like this one")
endif()
include(CPack)
