#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace AzureDicom
{
// The attributes that identify a DICOM instance, as the bytes of its file give them: trailing
// padding (spaces and NULs) removed, no character set conversion.
struct DicomIdentifiers
{
  std::string sopClassUid;        // (0008,0016)
  std::string sopInstanceUid;     // (0008,0018)
  std::string patientId;          // (0010,0020)
  std::string studyInstanceUid;   // (0020,000D)
  std::string seriesInstanceUid;  // (0020,000E)
};


// Reads the top-level elements at the start of a DICOM Part 10 file (or of a data set without
// file meta information) in memory, just far enough to find the identifiers. Sequences are
// skipped, so an element nested in one is never taken for a top-level one. Reads nothing past
// the end of the buffer, which may hold only the start of a file. Stateless between calls.
class DicomPrefixReader
{
public:
  DicomPrefixReader(const char* data, size_t size) :
      data_(reinterpret_cast<const unsigned char*>(data)), size_(size)
  {
  }

  // Reads up to (0008,0018) and returns whether the SOP Instance UID was found. A deflated data
  // set is not inflated: its file meta information's (0002,0002) and (0002,0003) are used
  // instead, which Part 10 requires to be equal to the data set's.
  bool ReadSopUids(DicomIdentifiers& identifiers) const;

  // Reads up to (0020,000E) and returns whether the SOP Instance UID, the Study Instance UID
  // and the Series Instance UID were found (the Patient ID may be absent). Returns false for a
  // deflated data set.
  bool ReadIdentifiers(DicomIdentifiers& identifiers) const;

private:
  struct Element
  {
    uint16_t group = 0;
    uint16_t element = 0;
    char vr[2] = {0, 0};
    uint32_t length = 0;
    size_t valueOffset = 0;
  };

  struct Syntax
  {
    size_t start = 0;  // of the data set
    bool explicitVr = true;
    bool bigEndian = false;
    bool deflated = false;
  };

  bool ReadSyntax(Syntax& syntax, DicomIdentifiers& meta) const;
  uint16_t Read16(size_t offset, bool bigEndian) const;
  uint32_t Read32(size_t offset, bool bigEndian) const;
  bool ReadElementHeader(Element& element, size_t position, bool explicitVr,
                         bool bigEndian) const;
  std::string ReadText(const Element& element) const;
  bool ReadFileMeta(size_t& position, std::string& transferSyntax, DicomIdentifiers& meta) const;
  bool SkipUndefinedLength(size_t& position, bool explicitVr, bool bigEndian,
                           unsigned int depth) const;

  // Moves position past the value of element, which depth sequences contain (0 at the top
  // level). Returns false when the value runs past the buffer's end or cannot be read.
  bool SkipValue(const Element& element, size_t& position, bool explicitVr, bool bigEndian,
                 unsigned int depth) const;

  // Reads the top-level elements from the data set's start until one past lastTag, and returns
  // false when the buffer ends or an element cannot be read before that.
  bool ReadTopLevel(const Syntax& syntax, uint32_t lastTag, DicomIdentifiers& identifiers) const;

  const unsigned char* data_;
  size_t size_;
};
}  // namespace AzureDicom
