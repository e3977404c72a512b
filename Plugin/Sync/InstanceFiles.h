#pragma once

#include "Sync/OrthancGateway.h"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace AzureDicom
{
// Files from this size on take their MD5 from Orthanc, which stored it with the attachment,
// because one REST call is estimated to cost less than hashing 64 KB. Smaller files are hashed.
constexpr size_t MD5_FROM_ORTHANC_MIN_BYTES = 64 * 1024;

// Returns the MD5 (lower-case hexadecimal) of an instance's DICOM file, whose bytes the caller
// holds. It reads the digest that Orthanc stored for the attachment when the file is large, and
// hashes the bytes when the file is small or when Orthanc has no digest for it
// (StoreMD5ForAttachments false).
std::string GetInstanceMd5(IOrthancGateway& orthanc, const std::string& orthancId,
                           const char* data, size_t size);

// Returns the MD5 of an instance's DICOM file, reading the file only when Orthanc has no digest
// for it, or "" when the instance does not exist.
std::string GetInstanceMd5(IOrthancGateway& orthanc, const std::string& orthancId);


// Reads instances' DICOM files from Orthanc for sending. Where Orthanc stores a file
// uncompressed, it reads the attachment as stored (/attachments/dicom/compressed-data), which in
// Orthanc 1.10.1 bypasses the storage cache that /file fills: a back-fill then neither grows
// Orthanc's memory by MaximumStorageCacheSize nor evicts the files that viewers just opened.
// A file read that way is used only if it has the expected size and starts like a DICOM file
// (the "DICM" prefix after the 128-byte preamble). Otherwise /file is read, and after three files
// in a row of another size, which StorageCompression causes, only /file is read. Thread-safe.
class InstanceFileReader
{
public:
  explicit InstanceFileReader(IOrthancGateway& orthanc) : orthanc_(orthanc)
  {
  }

  // Returns the file, or null when the instance no longer exists in Orthanc. An expectedSize of
  // 0 (unknown) reads /file.
  std::unique_ptr<IBuffer> Read(const std::string& orthancId, uint64_t expectedSize);

  bool ReadsStoredAttachments() const
  {
    return storedSizeMismatches_ < STORED_SIZE_MISMATCHES_TO_STOP;
  }

private:
  static constexpr unsigned int STORED_SIZE_MISMATCHES_TO_STOP = 3;

  IOrthancGateway& orthanc_;
  std::atomic<unsigned int> storedSizeMismatches_{0};
};
}  // namespace AzureDicom
