#pragma once

#include "Sync/OrthancGateway.h"
#include "Sync/StoredFileCache.h"

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


// An instance's DICOM attachment that Orthanc keeps uncompressed, under a UUID that can name a
// file in Orthanc's storage directory.
struct PlainAttachment
{
  std::string uuid;
  uint64_t size = 0;
  std::string md5;  // the MD5 that Orthanc stored for the file, "" when it has none
};

// Looks up the instance's DICOM attachment in Orthanc (/attachments/dicom/info), with the MD5
// that Orthanc stored for it (StoreMD5ForAttachments). Returns false when Orthanc compresses it,
// when its UUID is not one of Orthanc's, or when the instance no longer exists, in which case
// instanceExists is set to false.
bool LookUpPlainAttachment(PlainAttachment& attachment, IOrthancGateway& orthanc,
                           const std::string& orthancId, bool& instanceExists);

// Returns the first maxBytes of the attachment's file in Orthanc's storage directory (all of it
// when it is smaller), as far as the page cache has them, so that it waits for no disk. Returns
// "" when there is no regular file of attachment.size bytes there, or none of it is cached.
std::string ReadAttachmentStart(const std::string& storageDirectory,
                                const PlainAttachment& attachment, size_t maxBytes);


// Reads instances' DICOM files from Orthanc for sending. Where Orthanc stores a file
// uncompressed, it reads the attachment as stored (/attachments/dicom/compressed-data). In
// Orthanc 1.10.1 that route bypasses the storage cache that /file fills, so a back-fill neither
// grows Orthanc's memory by MaximumStorageCacheSize nor evicts the files that viewers opened.
// A file read that way is used only if it has the expected size and starts like a DICOM file
// (the "DICM" prefix after the 128-byte preamble). Otherwise /file is read, and after three files
// in a row of another size, which StorageCompression causes, only /file is read. Thread-safe.
//
// First of all, a small file is taken from the StoredFileCache when it is there. Otherwise the
// file is read from the storage directory that SetStorageDirectory() named, when the
// attachment is a plain file there (Orthanc's default storage, uncompressed). The
// reader finds it by its UUID, or looks the UUID up (/attachments/dicom/info) when the caller
// does not have it. Files from DIRECT_READ_MIN_BYTES on are mapped into memory, so the upload
// reads the page cache and no copy of the file is made, where Orthanc's REST API would hold it
// twice for a moment. After STORAGE_MISSES_TO_STOP files in a row that were not there, only
// large files are still looked for in the directory.
class InstanceFileReader
{
public:
  static constexpr uint64_t DIRECT_READ_MIN_BYTES = 16 * 1024 * 1024;

  explicit InstanceFileReader(IOrthancGateway& orthanc) : orthanc_(orthanc)
  {
  }

  // Sets Orthanc's StorageDirectory, as an absolute path, before the first Read().
  void SetStorageDirectory(const std::string& directory)
  {
    storageDirectory_ = directory;
  }

  // Takes the files that the cache has, of the expected size, from there instead of from
  // Orthanc. Call it before the first Read().
  void SetStoredFileCache(StoredFileCache* cache)
  {
    storedFiles_ = cache;
  }

  // Returns the file, or null when the instance no longer exists in Orthanc. An expectedSize of
  // 0 (unknown) reads /file. The attachment's fileUuid, when the caller has it, saves the
  // lookup before a read from the storage directory, and fileMd5 is the MD5 that Orthanc stored
  // with it. storedMd5, when given, receives the MD5 that Orthanc stored for the file returned.
  // That is fileMd5 for the file that fileUuid names, and the digest from the lookup for the
  // file that the lookup named. For any other file, it is "". Orthanc never writes other
  // content under a UUID, so the digest of a UUID stays right.
  std::unique_ptr<IBuffer> Read(const std::string& orthancId, uint64_t expectedSize,
                                const std::string& fileUuid = "", const std::string& fileMd5 = "",
                                std::string* storedMd5 = nullptr);

  bool ReadsStoredAttachments() const
  {
    return storedSizeMismatches_ < STORED_SIZE_MISMATCHES_TO_STOP;
  }

  // False after STORAGE_MISSES_TO_STOP files in a row were not found in the storage directory
  // as expected: Orthanc compresses its files, or a storage plugin keeps them elsewhere.
  bool ReadsStorageDirectory() const
  {
    return !storageDirectory_.empty() && storageMisses_ < STORAGE_MISSES_TO_STOP;
  }

private:
  static constexpr unsigned int STORED_SIZE_MISMATCHES_TO_STOP = 3;
  static constexpr unsigned int STORAGE_MISSES_TO_STOP = 20;

  // Returns the file with that UUID from the storage directory, or null when it is not a plain
  // DICOM file of that size there.
  std::unique_ptr<IBuffer> ReadFromStorage(const std::string& fileUuid, uint64_t expectedSize);

  // Looks up the attachment's UUID in Orthanc and returns the file from the storage directory,
  // or null when it is not a plain file of that size there. With the file, it sets storedMd5 to
  // the MD5 that Orthanc stored for it ("" when it has none). Sets instanceExists to false when
  // Orthanc no longer has the instance.
  std::unique_ptr<IBuffer> ReadFromStorageAfterLookup(const std::string& orthancId,
                                                      uint64_t expectedSize, std::string& storedMd5,
                                                      bool& instanceExists);

  IOrthancGateway& orthanc_;
  StoredFileCache* storedFiles_ = nullptr;
  std::string storageDirectory_;
  std::atomic<unsigned int> storedSizeMismatches_{0};
  std::atomic<unsigned int> storageMisses_{0};
};
}  // namespace AzureDicom
